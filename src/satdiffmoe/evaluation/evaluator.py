"""Evaluate a loaded task (or a reference method) on the cached test split.

    evaluator = Evaluator(cfg)                   # test scenes are read once per LR selection
    summary = evaluator.run(task, cfg)           # the eval/<name>.json dict (docs/ARCHITECTURE.md)
    result = evaluator.evaluate("mean_bicubic", cfg)   # summary + per-scene rows + a grid batch

Sweeps call `run` many times with different `cfg.sampler` on one loaded model; the scenes are cached
per (data.num_lr, data.eval_lr_policy, data.test_subset), so only a new LR selection reads shards.

Statistics: each scene's metric is first averaged over `eval.seeds`; the aggregate is the mean, the
sample std and the half-width of the two-sided 95% Student-t confidence interval of the mean over
scenes (`scipy.stats.t.interval`, n - 1 degrees of freedom).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from scipy import stats
from tqdm.auto import tqdm

from ..config import as_plain
from ..data.lr_stack import lr_rgb_view
from ..errors import UserError
from ..sampling.noise import scene_generators
from . import calibration
from .dataset import dataset_identity
from .references import REFERENCES, bicubic_nearest
from .suite import MetricSuite, absolute_error, finite_or_none
from .uncertainty_references import CONSTANT_RHO, UncertaintyReferences

log = logging.getLogger(__name__)
Method = str | torch.nn.Module


@dataclass
class EvalResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]  # one per scene and seed
    grid: dict[str, torch.Tensor] = field(default_factory=dict)  # first scenes of the first seed
    # free uncertainty maps scored against this result's error (uncertainty_references.py)
    companions: list[EvalResult] = field(default_factory=list)


def aggregate(values: list[float]) -> dict[str, Any]:
    """mean, sample std, 95% t-interval half-width and n of finite per-scene values."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    if n == 0:
        return {"unavailable": "no finite values"}
    mean = float(finite.mean())
    std = float(finite.std(ddof=1)) if n > 1 else 0.0
    ci95 = None
    if n > 1:
        low, _ = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
        ci95 = float(mean - low) if math.isfinite(low) else 0.0
    return {"mean": mean, "std": std, "ci95": ci95, "n": n}


# data settings that choose what an evaluation scores (data.seed-driven random_k included through `seed`)
EVAL_DATA_KEYS = ("num_lr", "eval_lr_policy", "test_subset", "lr_rgb")


def evaluation_settings(method: str, cfg: DictConfig, uses_sampler: bool = True) -> dict[str, Any]:
    """What an evaluation's numbers depend on besides the weights: the method, the whole resolved
    `sampler` (only for a method that samples with it; new sampler keys are covered as they come), the
    seeds, the metrics, the LR selection and the dataset. `evaluate` stores it in each eval JSON and
    refuses to write over a JSON holding other settings; its hash ends every default name."""
    dataset = dataset_identity(cfg, 0)
    return {
        "method": method,
        "sampler": as_plain(cfg.sampler) if uses_sampler else None,
        "seeds": [int(s) for s in cfg.eval.seeds],
        "metrics": list(cfg.eval.metrics),
        "data": {key: as_plain(cfg.data[key]) for key in EVAL_DATA_KEYS},
        "seed": int(cfg.seed),
        "dataset": dataset["manifest_id"] or dataset["root"],
    }


def settings_hash(settings: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]


def default_name(method: str, cfg: DictConfig, nfe: int | None = None, uses_sampler: bool = True) -> str:
    """The eval/<name>.json of an evaluation: `eval.name` when given; else readable settings and the hash
    of `evaluation_settings`, so two evaluations that differ in any setting never share a file.

    `method` is a reference's name (`mean_bicubic`: the references keep one name per N, as `eval.name`
    names only the model's result), or the stage of the model. `nfe` is the number of network
    evaluations actually made (guidance doubles the steps); a model that does not sample (the
    regression baselines) is named by its stage, without sampler settings."""
    num_lr = "all" if cfg.data.num_lr == -1 else cfg.data.num_lr
    if method in REFERENCES:
        return f"{method}_n{num_lr}"
    if cfg.eval.name:
        return str(cfg.eval.name)
    digest = settings_hash(evaluation_settings(method, cfg, uses_sampler))
    if not uses_sampler:
        return f"{method}_n{num_lr}_{digest}"
    s = cfg.sampler
    fusion = s.fusion_every if s.fusion_every else "off"
    dpm = "_dpm" if s.scheduler == "dpm" else ""
    return f"nfe{nfe or s.nfe}_fuse{fusion}_{s.consensus}_n{num_lr}{dpm}_{digest}"


def method_key(method: Method, cfg: DictConfig) -> tuple[str, bool]:
    """(the method's name in `evaluation_settings`, whether it samples with `cfg.sampler`)."""
    if isinstance(method, str):
        return method, False
    return str(getattr(method, "stage", cfg.stage)), getattr(method, "uses_sampler", True)


def method_settings(method: Method, cfg: DictConfig) -> dict[str, Any]:
    """`evaluation_settings` of a loaded model or a reference's name."""
    name, uses_sampler = method_key(method, cfg)
    return evaluation_settings(name, cfg, uses_sampler)


def result_name(method: Method, cfg: DictConfig, nfe: int | None = None) -> str:
    """The name `Evaluator.evaluate` gives the result of `method` (see `default_name`)."""
    name, uses_sampler = method_key(method, cfg)
    fixed = getattr(method, "eval_name", None)  # the autoencoder reconstruction: a reference, one file per N
    if fixed:
        return f"{fixed}_n{'all' if cfg.data.num_lr == -1 else cfg.data.num_lr}"
    return default_name(name, cfg, nfe=nfe, uses_sampler=uses_sampler)


class Evaluator:
    def __init__(self, cfg: DictConfig, datamodule: Any = None):
        self.cfg = cfg
        self._scenes: dict[tuple, list[dict[str, Any]]] = {}
        if datamodule is not None:
            self._scenes[self._scene_key(cfg)] = self._read(datamodule)
        self._suite: MetricSuite | None = None

    # ------------------------------------------------------------------------------------- scenes
    @staticmethod
    def _scene_key(cfg: DictConfig) -> tuple:
        return (cfg.data.num_lr, cfg.data.eval_lr_policy, cfg.data.test_subset, cfg.data.root, cfg.data.shards.test)

    @staticmethod
    def _read(datamodule: Any) -> list[dict[str, Any]]:
        datamodule.setup("test")
        # Evaluation samples in one process: read every scene even when a DDP process group exists
        # (rank 0 of a DDP training sweep evaluates its trials).
        batches = list(tqdm(datamodule.test_dataloader(distributed=False), desc="reading test scenes", leave=False))
        if not batches:
            raise UserError("the test split has no scenes; check data.root / data.shards.test")
        wanted = datamodule.data.num_lr
        available = max(int(b["lr_valid"].sum(1).max()) for b in batches)
        if wanted > available:  # otherwise an "n9" result would silently be computed from fewer LRs
            raise UserError(f"data.num_lr={wanted} but the test scenes have at most {available} LR images; "
                            f"use data.num_lr<={available} (or -1 for all)")
        return batches

    def scenes(self, cfg: DictConfig) -> list[dict[str, Any]]:
        key = self._scene_key(cfg)
        if key not in self._scenes:
            from ..data.datamodule import SatDataModule

            self._scenes[key] = self._read(SatDataModule(cfg))
        return self._scenes[key]

    # ------------------------------------------------------------------------------------ running
    def suite(self, cfg: DictConfig) -> MetricSuite:
        """The metric suite, its networks loaded once across `evaluate` calls with the same eval config."""
        wanted = (list(cfg.eval.metrics), cfg.eval.lpips_weights, cfg.eval.inception_weights)
        if self._suite is None or (self._suite.metrics, self._suite.lpips_weights,
                                   self._suite.inception_weights) != wanted:
            self._suite = MetricSuite(cfg.eval)
        return self._suite

    def run(self, method: Method, cfg: DictConfig | None = None) -> dict[str, Any]:
        return self.evaluate(method, cfg).summary

    def evaluate(self, method: Method, cfg: DictConfig | None = None,
                 uncertainty_references: bool = False) -> EvalResult:
        """`uncertainty_references`: also score the free maps of uncertainty_references.py against
        this method's error (`EvalResult.companions`), when it has an uncertainty map."""
        cfg = cfg or self.cfg
        suite = self.suite(cfg)
        is_reference = isinstance(method, str)
        if is_reference and method not in REFERENCES:
            raise UserError(f"unknown reference method '{method}'; choose one of {', '.join(REFERENCES)}")
        device = torch.device("cpu") if is_reference else next(method.parameters()).device
        scenes = self.scenes(cfg)
        hr = scenes[0]["hr"]
        # a model without an uncertainty map (the regression baselines) gets the calibration metrics
        # reported as unavailable, not as "undefined on every scene"
        has_uncertainty = not is_reference and getattr(method, "produces_uncertainty", True)
        unavailable = suite.unavailable(int(hr.shape[1]), min(hr.shape[-2:]), has_uncertainty=has_uncertainty)

        rows, outputs, targets, grid, nfe, timesteps = [], [], [], {}, 0, None
        curves: list[calibration.Sparsification] = []
        free_maps = UncertaintyReferences([m for m in suite.metrics if m not in unavailable], _rows) \
            if uncertainty_references and has_uncertainty else None
        started = time.perf_counter()
        for seed in cfg.eval.seeds:
            for batch in tqdm(scenes, desc=f"evaluating seed {seed}", leave=False):
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                # a multispectral LR is compared with HR-band images through its HR bands (data.lr_rgb):
                # the references, the LR-consistency metrics and the grid see this view; the model all bands
                rgb = lr_rgb_view(batch, cfg.data.lr_rgb)
                if is_reference:
                    image, uncertainty = REFERENCES[method](rgb), None
                else:  # each scene's noise from (seed, scene key): every row of a sweep sees the same noise
                    out = method.sample(batch, cfg.sampler, scene_generators(seed, batch["key"], device))
                    image, uncertainty, nfe = out.image, out.uncertainty, out.nfe
                    timesteps = getattr(out, "timesteps", None)
                values = suite.per_image(rgb, image, uncertainty, unavailable)
                if uncertainty is not None and "ause" in values:
                    ranks = calibration.ranks_anything(uncertainty)  # a constant map has no curve
                    if ranks.any():
                        curves.append(calibration.sparsification(
                            uncertainty[ranks].cpu(), absolute_error(image[ranks], batch["hr"][ranks]).cpu()))
                rows.extend(_rows(batch, seed, values))
                if free_maps is not None:
                    free_maps.add(rgb, image, seed)
                outputs.append(image.float().cpu())
                targets.append(batch["hr"].float().cpu())
                if not grid:
                    grid = self._grid_batch(rgb, image, uncertainty, cfg.eval.grid_scenes)
        wall = time.perf_counter() - started  # sampling and per-image metrics; set metrics come after
        set_level = suite.set_level(torch.cat(outputs), torch.cat(targets), unavailable)
        summary = self._summary(method, cfg, rows, set_level, wall, nfe, unavailable)
        if timesteps is not None:
            summary["timesteps"] = [int(t) for t in timesteps]
        if curves:
            summary["sparsification"] = _mean_curve(curves)
        companions = [] if free_maps is None else self._reference_maps(free_maps, summary)
        return EvalResult(summary=summary, rows=rows, grid=grid, companions=companions)

    @staticmethod
    def _reference_maps(free_maps: UncertaintyReferences, model: dict[str, Any]) -> list[EvalResult]:
        """One eval summary per free uncertainty map: the model's scenes and data, only calibration metrics
        (none when the evaluation asks for no calibration metric)."""
        results = []
        if not free_maps.metrics:
            return results
        for name, rows in free_maps.rows.items():
            metrics = {}
            for metric in free_maps.metrics:
                by_scene: dict[str, list[float]] = {}
                for row in rows:
                    if row.get(metric) is not None:
                        by_scene.setdefault(row["key"], []).append(row[metric])
                metrics[metric] = aggregate([float(np.mean(v)) for v in by_scene.values()])
                if "unavailable" in metrics[metric] and name == "unc_constant":
                    metrics[metric] = {"unavailable": CONSTANT_RHO}
            summary = {key: model[key] for key in ("num_scenes", "seeds", "num_lr", "dataset", "ckpt")}
            summary.update({"name": f"{model['name']}_{name}", "method": name, "stage": None, "nfe": 0,
                            "steps": None, "sampler": None, "uncertainty_of": model["name"],
                            "params": {"trainable": 0, "total": 0}, "metrics": metrics})
            # scored against the model's outputs: the model's settings are what its numbers depend on
            settings = {**model.get("settings", {}), "uncertainty_reference": name}
            summary.update({"settings": settings, "settings_hash": settings_hash(settings)})
            if free_maps.curves[name]:
                summary["sparsification"] = _mean_curve(free_maps.curves[name])
            results.append(EvalResult(summary=summary, rows=rows))
        return results

    @staticmethod
    def _grid_batch(batch, image, uncertainty, count: int) -> dict[str, torch.Tensor]:
        grid = {"lr": batch["lr"], "lr_valid": batch["lr_valid"], "bicubic": bicubic_nearest(batch),
                "output": image, "hr": batch["hr"]}
        if uncertainty is not None:
            grid["uncertainty"] = uncertainty
        return {k: v[:count].detach().cpu() for k, v in grid.items()}

    def _summary(self, method, cfg, rows, set_level, wall, nfe, unavailable) -> dict[str, Any]:
        is_reference = isinstance(method, str)
        by_scene: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            for name, value in row.items():
                if name not in ("key", "seed", "num_lr") and value is not None:
                    by_scene.setdefault(name, {}).setdefault(row["key"], []).append(value)
        results: dict[str, Any] = {}
        for name in cfg.eval.metrics:  # in the order asked for
            if name in unavailable:
                results[name] = {"unavailable": unavailable[name]}
            elif name in by_scene:
                results[name] = aggregate([float(np.mean(v)) for v in by_scene[name].values()])
            elif name in set_level:
                results[name] = set_level[name]
            else:
                results[name] = {"unavailable": "undefined on every scene (e.g. a constant uncertainty map: "
                                                "one branch has no spread, so it ranks nothing)"}
        num_scenes = len({row["key"] for row in rows})
        params = {"trainable": 0, "total": 0}
        if not is_reference:
            params = {"trainable": sum(p.numel() for p in method.parameters() if p.requires_grad),
                      "total": sum(p.numel() for p in method.parameters())}
        settings = method_settings(method, cfg)
        return {
            "name": result_name(method, cfg, nfe=None if is_reference else int(nfe)),
            "settings": settings, "settings_hash": settings_hash(settings),
            "method": method if is_reference else str(getattr(method, "stage", cfg.stage)),
            "stage": None if is_reference else str(getattr(method, "stage", cfg.stage)),
            "ckpt": None if is_reference else cfg.ckpt,
            "num_scenes": num_scenes, "seeds": [int(s) for s in cfg.eval.seeds],
            "num_lr": int(cfg.data.num_lr), "nfe": int(nfe),
            "steps": None if is_reference else int(cfg.sampler.nfe),
            "dataset": dataset_identity(cfg, num_scenes),
            "sampler": settings["sampler"],
            "wall_time_s": wall, "seconds_per_image": wall / max(1, len(rows)),
            # the numbers depend on it at the float-rounding level (satdiffmoe/threads.py)
            "torch_threads": torch.get_num_threads(),
            "params": params, "trainable": None if is_reference else trainable_mode(method), "metrics": results,
        }


def trainable_mode(method: Any) -> str | None:
    """The model's `train.trainable` (all | lora | new_only), from the config it was trained with."""
    cfg = getattr(method, "cfg", None)
    train = getattr(cfg, "train", None) if cfg is not None else None
    mode = getattr(train, "trainable", None) if train is not None else None
    return None if mode is None else str(mode)

def _rows(batch: dict[str, Any], seed: int, values: dict[str, torch.Tensor]) -> list[dict[str, Any]]:
    rows = []
    for i, key in enumerate(batch["key"]):
        row = {"key": key, "seed": int(seed), "num_lr": int(batch["lr_valid"][i].sum())}
        row.update({name: finite_or_none(v[i]) for name, v in values.items()})
        rows.append(row)
    return rows


def _mean_curve(curves: list) -> dict[str, list[float]]:
    """The mean sparsification and oracle curves over every evaluated image (for the report figure)."""
    curve = torch.cat([c.curve for c in curves]).nanmean(0)
    oracle = torch.cat([c.oracle for c in curves]).nanmean(0)
    return {"fractions": curves[0].fractions.tolist(), "curve": curve.tolist(), "oracle": oracle.tolist()}
