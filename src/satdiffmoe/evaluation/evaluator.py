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
from ..errors import UserError
from . import metrics as M
from .references import REFERENCES, bicubic_nearest

log = logging.getLogger(__name__)
Method = str | torch.nn.Module


@dataclass
class EvalResult:
    summary: dict[str, Any]
    rows: list[dict[str, Any]]  # one per scene and seed
    grid: dict[str, torch.Tensor] = field(default_factory=dict)  # first scenes of the first seed


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


def default_name(method: str, cfg: DictConfig) -> str:
    num_lr = "all" if cfg.data.num_lr == -1 else cfg.data.num_lr
    # references always carry their own name: eval.name names the model's result, and reusing it
    # would overwrite that result's JSON with a reference's
    if method in REFERENCES:
        return f"{method}_n{num_lr}"
    if cfg.eval.name:
        return str(cfg.eval.name)
    s = cfg.sampler
    fusion = s.fusion_every if s.fusion_every else "off"
    return f"nfe{s.nfe}_fuse{fusion}_{s.consensus}_n{num_lr}" + ("_dpm" if s.scheduler == "dpm" else "")


class Evaluator:
    def __init__(self, cfg: DictConfig, datamodule: Any = None):
        self.cfg = cfg
        self._scenes: dict[tuple, list[dict[str, Any]]] = {}
        if datamodule is not None:
            self._scenes[self._scene_key(cfg)] = self._read(datamodule)
        self._lpips_model: torch.nn.Module | None = None

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
    def run(self, method: Method, cfg: DictConfig | None = None) -> dict[str, Any]:
        return self.evaluate(method, cfg).summary

    def evaluate(self, method: Method, cfg: DictConfig | None = None) -> EvalResult:
        cfg = cfg or self.cfg
        unknown = [m for m in cfg.eval.metrics if m not in M.PER_IMAGE and m not in M.SET_LEVEL and m != "lpips"]
        if unknown:
            raise UserError(f"unknown eval.metrics {unknown}; choose from "
                            f"{sorted(list(M.PER_IMAGE) + list(M.SET_LEVEL) + ['lpips'])}")
        is_reference = isinstance(method, str)
        if is_reference and method not in REFERENCES:
            raise UserError(f"unknown reference method '{method}'; choose one of {', '.join(REFERENCES)}")
        device = torch.device("cpu") if is_reference else next(method.parameters()).device
        scenes = self.scenes(cfg)
        channels = int(scenes[0]["hr"].shape[1])
        lpips_reason = M.lpips_unavailable(cfg.eval.lpips_weights, channels) if "lpips" in cfg.eval.metrics else None

        rows, outputs, targets, grid, nfe = [], [], [], {}, 0
        started = time.perf_counter()
        for seed in cfg.eval.seeds:
            generator = torch.Generator(device=device).manual_seed(int(seed))
            for batch in tqdm(scenes, desc=f"evaluating seed {seed}", leave=False):
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                if is_reference:
                    image, uncertainty = REFERENCES[method](batch), None
                else:
                    out = method.sample(batch, cfg.sampler, generator)
                    image, uncertainty, nfe = out.image, out.uncertainty, out.nfe
                rows.extend(self._scene_rows(batch, image, seed, cfg, lpips_reason))
                outputs.append(image.float().cpu())
                targets.append(batch["hr"].float().cpu())
                if not grid:
                    grid = self._grid_batch(batch, image, uncertainty, cfg.eval.grid_scenes)
        wall = time.perf_counter() - started
        summary = self._summary(method, cfg, rows, torch.cat(outputs), torch.cat(targets), wall, nfe,
                                lpips_reason)
        return EvalResult(summary=summary, rows=rows, grid=grid)

    def _lpips(self, weights: str) -> torch.nn.Module:
        if self._lpips_model is None:
            self._lpips_model = M.load_lpips(weights)
        return self._lpips_model

    def _scene_rows(self, batch, image, seed, cfg, lpips_reason) -> list[dict[str, Any]]:
        hr, wanted = batch["hr"], cfg.eval.metrics
        image = image.to(hr.device)
        values: dict[str, torch.Tensor] = {}
        for name in wanted:
            if name in ("psnr", "ssim"):
                values[name] = M.PER_IMAGE[name](image, hr)
            elif name in ("cpsnr", "cssim"):
                values[name] = M.PER_IMAGE[name](image, hr, batch.get("hr_mask"))
            elif name == "lr_psnr":
                values[name] = M.lr_psnr(image, batch["lr"], batch["lr_valid"], batch.get("lr_mask"))
            elif name == "lpips" and lpips_reason is None:
                values[name] = M.lpips(image, hr, self._lpips(cfg.eval.lpips_weights))
        rows = []
        for i, key in enumerate(batch["key"]):
            row = {"key": key, "seed": int(seed), "num_lr": int(batch["lr_valid"][i].sum())}
            row.update({name: float(v[i]) for name, v in values.items()})
            rows.append(row)
        return rows

    @staticmethod
    def _grid_batch(batch, image, uncertainty, count: int) -> dict[str, torch.Tensor]:
        grid = {"lr": batch["lr"], "lr_valid": batch["lr_valid"], "bicubic": bicubic_nearest(batch),
                "output": image, "hr": batch["hr"]}
        if uncertainty is not None:
            grid["uncertainty"] = uncertainty
        return {k: v[:count].detach().cpu() for k, v in grid.items()}

    def _summary(self, method, cfg, rows, outputs, targets, wall, nfe, lpips_reason) -> dict[str, Any]:
        is_reference = isinstance(method, str)
        by_scene: dict[str, dict[str, list[float]]] = {}
        for row in rows:
            for name, value in row.items():
                if name not in ("key", "seed", "num_lr"):
                    by_scene.setdefault(name, {}).setdefault(row["key"], []).append(value)
        results: dict[str, Any] = {}
        for name in cfg.eval.metrics:
            if name == "lpips" and lpips_reason is not None:
                results[name] = {"unavailable": lpips_reason}
            elif name in by_scene:
                results[name] = aggregate([float(np.mean(v)) for v in by_scene[name].values()])
        results.update(self._set_metrics(cfg, outputs, targets))
        num_scenes = len({row["key"] for row in rows})
        params = {"trainable": 0, "total": 0}
        if not is_reference:
            params = {"trainable": sum(p.numel() for p in method.parameters() if p.requires_grad),
                      "total": sum(p.numel() for p in method.parameters())}
        return {
            "name": default_name(method if is_reference else "model", cfg),
            "method": method if is_reference else str(getattr(method, "stage", cfg.stage)),
            "stage": None if is_reference else str(getattr(method, "stage", cfg.stage)),
            "ckpt": None if is_reference else cfg.ckpt,
            "num_scenes": num_scenes, "seeds": [int(s) for s in cfg.eval.seeds],
            "num_lr": int(cfg.data.num_lr), "nfe": int(nfe),
            "sampler": None if is_reference else as_plain(cfg.sampler),
            "wall_time_s": wall, "seconds_per_image": wall / max(1, len(rows)),
            "params": params, "metrics": results,
        }

    @staticmethod
    def _set_metrics(cfg, outputs, targets) -> dict[str, Any]:
        results: dict[str, Any] = {}
        if "swd" in cfg.eval.metrics:
            results["swd"] = {"mean": M.sliced_wasserstein(targets, outputs), "n": len(outputs), "set_level": True}
        inception = [m for m in ("fid", "kid") if m in cfg.eval.metrics]
        if inception:
            reason = M.inception_unavailable(cfg.eval.inception_weights, int(targets.shape[1]))
            if reason is None and len(outputs) < 2:
                reason = "needs at least 2 images"
            if reason is not None:
                results.update({m: {"unavailable": reason} for m in inception})
            else:
                features = M.inception_features(cfg.eval.inception_weights)
                scores = M.inception_scores(targets, outputs, features, inception)
                results.update({m: {"mean": v, "n": len(outputs), "set_level": True} for m, v in scores.items()})
        return results
