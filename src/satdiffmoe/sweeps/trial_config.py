"""The experiment configs of a sweep: the base every trial starts from, and one trial's.

A trial's config is a pure function of the sweep file, the trial number and its parameters, so every
DDP rank rebuilds exactly rank 0's config from the parameters it broadcasts (ddp_trials.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..config import load_config, with_overrides
from .spec import to_config_value


def base_config(spec: DictConfig) -> DictConfig:
    """The experiment config every trial starts from: the sweep's config + base_overrides (+ ckpt)."""
    overrides = list(spec.base_overrides)
    if spec.ckpt:
        overrides.append(f"ckpt={spec.ckpt}")
    return load_config(spec.config, overrides)


def trial_config(spec: DictConfig, base_cfg: DictConfig, sweep_dir: Path, number: int,
                 params: dict[str, Any]) -> DictConfig:
    """`base_cfg` with trial `number`'s parameters; a training trial's run goes under `sweep_dir`/trials."""
    overrides = {key: to_config_value(value) for key, value in params.items()}
    overrides["eval.seeds"] = list(range(spec.seeds))
    if spec.kind == "train":
        overrides.update({"name": f"{spec.study}-trial-{number}",
                          "run_root": str(Path(sweep_dir) / "trials"), "run_id": "run"})
    return with_overrides(base_cfg, overrides)
