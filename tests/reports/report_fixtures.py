"""Writers of report inputs in the on-disk formats of docs/ARCHITECTURE.md (shared by the report tests)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

FUSION_BONUS = {1: 2.0, 5: 3.0, "off": 0.0}


def psnr_of(fusion_every, nfe: int, seed: int) -> float:
    return 20.0 + nfe / 10 + FUSION_BONUS[fusion_every] + 0.5 * seed


def write_run(root: Path, stage: str, name: str, psnr_per_step: float, cap: float, seconds_per_step: float) -> Path:
    run = root / name / "run1"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"name: {name}\nstage: {stage}\nrun_id: run1\n")
    lines = []
    for step in range(50, 1001, 50):
        lines.append({"step": step, "wall_time": step * seconds_per_step, "epoch": 0, "train/loss": 1.0 / step})
        if step % 100 == 0:
            lines.append({"step": step, "wall_time": step * seconds_per_step, "epoch": 0,
                          "val/psnr": min(step * psnr_per_step, cap), "val/loss": 100.0 / step})
    (run / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run


def eval_summary(name: str, method: str, psnr: float, *, num_lr: int = 4, nfe: int = 50, fusion_every=5,
                 num_scenes: int = 8, seeds=(0,), seconds_per_image: float = 0.5, trainable: int = 1000) -> dict:
    return {
        "name": name, "method": method, "stage": method, "ckpt": "x.ckpt", "num_scenes": num_scenes,
        "seeds": list(seeds), "num_lr": num_lr, "nfe": nfe,
        "sampler": {"nfe": nfe, "fusion_every": None if fusion_every == "off" else fusion_every, "consensus": "mean"},
        "wall_time_s": seconds_per_image * num_scenes, "seconds_per_image": seconds_per_image,
        "params": {"trainable": trainable, "total": 5000},
        "metrics": {"psnr": {"mean": psnr, "std": 1.0, "ci95": 0.4, "n": num_scenes},
                    "lpips": {"mean": round(10.0 / psnr, 4), "std": 0.01, "ci95": 0.005, "n": num_scenes},
                    "kid": {"mean": 0.01, "std": 0.002, "n": num_scenes, "set_level": True},
                    "fid": {"unavailable": "no weight file: install it"}},
    }


def add_grid_trials(study: optuna.Study, seeds=(0, 1)) -> None:
    distributions = {"sampler.fusion_every": CategoricalDistribution([1, 5, "off"]),
                     "sampler.nfe": CategoricalDistribution([10, 50]),
                     "seed": CategoricalDistribution(list(seeds))}
    for fusion_every in (1, 5, "off"):
        for nfe in (10, 50):
            for seed in seeds:
                psnr = psnr_of(fusion_every, nfe, seed)
                summary = eval_summary("t", "satdiffmoe", psnr, nfe=nfe, fusion_every=fusion_every,
                                       seconds_per_image=0.01 * nfe)
                study.add_trial(create_trial(
                    params={"sampler.fusion_every": fusion_every, "sampler.nfe": nfe, "seed": seed},
                    distributions=distributions, values=[psnr], user_attrs={"eval": summary}))


def add_failed_study(storage, name: str) -> None:
    study = optuna.create_study(study_name=name, storage=storage)
    study.add_trial(create_trial(state=TrialState.FAIL, params={}, distributions={}))


def write_convergence_runs(root: Path) -> Path:
    """val/psnr reaches 20 dB at step 200 (SatDiffMoE), 1000 (ControlNet) and never (DiffusionSat)."""
    write_run(root, "satdiffmoe", "ours", psnr_per_step=0.1, cap=25.0, seconds_per_step=0.5)
    write_run(root, "controlnet", "cn", psnr_per_step=0.02, cap=25.0, seconds_per_step=0.25)
    write_run(root, "diffusionsat", "ds", psnr_per_step=0.01, cap=10.0, seconds_per_step=0.25)
    return root


def write_eval_summary(folder: Path, name: str, method: str, psnr: float, **kwargs) -> Path:
    path = folder / f"{name}.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(eval_summary(name, method, psnr, **kwargs)))
    return path


SCENE_OFFSETS = [5.0 * i for i in range(8)]  # per-scene PSNR spread (dB): far larger than any config effect


def scene_columns(psnr: float, keys=None) -> dict:
    """A trial's `scenes` attribute: scene s has psnr + SCENE_OFFSETS[s] - mean offset (mean stays psnr)."""
    keys = keys or [f"s{i}" for i in range(len(SCENE_OFFSETS))]
    centre = sum(SCENE_OFFSETS) / len(SCENE_OFFSETS)
    values = [psnr + SCENE_OFFSETS[i] - centre for i in range(len(keys))]
    return {"key": keys, "seed": [0] * len(keys), "psnr": values, "lpips": [10.0 / v for v in values]}


def write_eval_rows(folder: Path, name: str, psnr: float, keys=None, seeds=(0,)) -> Path:
    """eval/<name>.jsonl beside <name>.json: per-scene rows built like `scene_columns`."""
    columns = scene_columns(psnr, keys)
    rows = [{"key": k, "seed": seed, "num_lr": 4, "psnr": p + seed, "lpips": lp}
            for seed in seeds for k, p, lp in zip(columns["key"], columns["psnr"], columns["lpips"])]
    path = folder / f"{name}.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def add_scene_trials(study: optuna.Study, nfes=(10, 50)) -> None:
    """fusion_every ∈ {1, 5, off} × nfe, one seed, each trial with its per-scene values."""
    distributions = {"sampler.fusion_every": CategoricalDistribution([1, 5, "off"]),
                     "sampler.nfe": CategoricalDistribution(list(nfes))}
    for fusion_every in (1, 5, "off"):
        for nfe in nfes:
            psnr = psnr_of(fusion_every, nfe, 0)
            summary = eval_summary("t", "satdiffmoe", psnr, nfe=nfe, fusion_every=fusion_every)
            study.add_trial(create_trial(
                params={"sampler.fusion_every": fusion_every, "sampler.nfe": nfe}, distributions=distributions,
                values=[psnr], user_attrs={"eval": summary, "scenes": scene_columns(psnr)}))
