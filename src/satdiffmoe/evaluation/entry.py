"""`satdiffmoe evaluate CONFIG ckpt=... [sampler.* data.num_lr=K eval.seeds=[0,1]]`.

Writes into the checkpoint's run folder (runs/x/y/checkpoints/best.ckpt -> runs/x/y/eval/), into a
new run folder under run_root when `run_root=DIR` is given (DIR/<name>/<id>/eval/), or into a new run
folder when the checkpoint does not sit in one. Every JSON records the dataset it scored (`dataset`:
manifest id, root, split, number of scenes) and the real NFE (`nfe`; `steps` is the sampler's):

    eval/<name>.json     summary: metrics (mean, std, ci95, n), resolved sampler, wall time, NFE
    eval/<name>.jsonl    one row per scene and seed
    eval/<name>.png      grid: LRs, bicubic, output, uncertainty, HR
    eval/<reference>_n<K>.json(l)   the same for bicubic_nearest and mean_bicubic (eval.references)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..config import load_config
from ..errors import UserError
from ..runs import RunDir, seed_everything
from .evaluator import EvalResult, Evaluator
from .grids import save_grid
from .references import REFERENCES

log = logging.getLogger(__name__)


def eval_folder(cfg: DictConfig, ckpt: Path, explicit_root: bool = False) -> Path:
    """Where results go: a new run folder under run_root when `run_root=` was given on the command
    line (`<run_root>/<name>/<id>/eval/`), else the checkpoint's run folder's eval/ when it has one,
    else a new run folder's."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    if not explicit_root and (run / "config.yaml").is_file():
        folder = run / "eval"
        folder.mkdir(exist_ok=True)
        return folder
    return RunDir.create(cfg).eval_dir


def write_result(folder: Path, result: EvalResult, grid: bool = True) -> Path:
    """eval/<name>.json (+ .jsonl rows, + .png grid); returns the JSON path."""
    name = result.summary["name"]
    target = folder / f"{name}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.summary, indent=2, allow_nan=False))
    os.replace(tmp, target)  # readers (reports, sweeps) never see half a file
    with open(folder / f"{name}.jsonl", "w") as rows:
        for row in result.rows:
            rows.write(json.dumps(row, allow_nan=False) + "\n")
    if grid and result.grid:
        save_grid(folder / f"{name}.png", **result.grid)
    return target


def format_metrics(summary: dict[str, Any]) -> str:
    parts: list[str] = []
    for name, value in summary["metrics"].items():
        if "unavailable" in value:
            parts.append(f"{name}=unavailable")
        else:
            ci = f"±{value['ci95']:.3g}" if value.get("ci95") is not None else ""
            parts.append(f"{name}={value['mean']:.4g}{ci}")
    return " ".join(parts)


def evaluate_command(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if not cfg.ckpt:
        raise UserError("evaluate needs a model: add ckpt=runs/<name>/<run>/checkpoints/last.ckpt (or the run folder)")
    from ..training.checkpoints import load_task, resolve_checkpoint

    ckpt = resolve_checkpoint(cfg.ckpt)
    seed_everything(cfg.seed)
    task = load_task(ckpt)
    if not hasattr(task, "sample"):  # only diffusion stages sample; an autoencoder would fail mid-run
        raise UserError(f"{ckpt} is a '{task.stage}' checkpoint; evaluate needs a diffusion stage "
                        "(prior, satdiffmoe, controlnet or diffusionsat)")
    task.eval()
    explicit_root = any(str(item).split("=", 1)[0].lstrip("+") == "run_root" for item in args.overrides or [])
    folder = eval_folder(cfg, Path(ckpt), explicit_root)
    evaluator = Evaluator(cfg)
    result = evaluator.evaluate(task, cfg)
    path = write_result(folder, result)
    log.info("%s: %s (%.2f s/image, NFE %d) -> %s", result.summary["name"], format_metrics(result.summary),
             result.summary["seconds_per_image"], result.summary["nfe"], path)
    if cfg.eval.references:
        for reference in REFERENCES:
            ref = evaluator.evaluate(reference, cfg)
            write_result(folder, ref, grid=False)
            log.info("%s: %s", ref.summary["name"], format_metrics(ref.summary))
    print(path)
    return 0
