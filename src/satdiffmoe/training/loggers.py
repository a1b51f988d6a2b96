"""Where training metrics and images go: `<run>/metrics.jsonl` (always) and W&B (offline by default).

The JSONL file is the contract reports read without W&B (docs/ARCHITECTURE.md, "Training log"): one
object per log call with `step`, `wall_time` (seconds since the run started, continued across resumes)
and the metric keys.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig
from PIL import Image

from ..config import as_plain
from ..errors import UserError
from ..runs import RunDir

log = logging.getLogger(__name__)


class JsonlLogger(Logger):
    """Appends one JSON line per `log_metrics` call; `clock()` supplies `wall_time`."""

    def __init__(self, path: str | Path, clock: Callable[[], float]):
        super().__init__()
        self.path = Path(path)
        self.clock = clock

    @property
    def name(self) -> str:
        return "jsonl"

    @property
    def version(self) -> str:
        return self.path.parent.name

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the resolved config.yaml sits beside metrics.jsonl

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        record = {"step": int(step) if step is not None else None, "wall_time": round(self.clock(), 3)}
        for key, raw in metrics.items():
            value = float(raw.item() if isinstance(raw, torch.Tensor) else raw)
            record[key] = int(value) if key == "epoch" else (None if math.isnan(value) else value)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")


# the modes wandb.init accepts (dryrun and run are its old names of offline and online)
WANDB_MODES = ("offline", "online", "disabled", "shared", "dryrun", "run")


def wandb_mode(configured: str) -> str:
    """`WANDB_MODE` in the environment beats the configured mode (`logging.wandb.mode`, a sweep file's
    `wandb.mode`; README, "W&B"). A value W&B would reject (with a pydantic traceback) is one line."""
    mode = os.environ.get("WANDB_MODE") or configured
    if mode not in WANDB_MODES:
        raise UserError(f"WANDB_MODE={mode!r} in the environment is not one of offline, online, disabled; "
                        "set one of them, or unset it to use logging.wandb.mode")
    return mode


def build_loggers(cfg: DictConfig, run: RunDir, clock: Callable[[], float]) -> list[Logger]:
    loggers: list[Logger] = [JsonlLogger(run.metrics_log, clock)]
    mode = wandb_mode(cfg.logging.wandb.mode)
    if mode != "disabled":
        loggers.append(wandb_logger(cfg, run, mode))
    return loggers


def wandb_init_timeout(cfg: DictConfig) -> float:
    """`WANDB_INIT_TIMEOUT` in the environment beats `logging.wandb.init_timeout_s`."""
    return float(os.environ.get("WANDB_INIT_TIMEOUT") or cfg.logging.wandb.init_timeout_s)


def wandb_logger(cfg: DictConfig, run: RunDir, mode: str) -> WandbLogger:
    """A WandbLogger; `online` connects now and falls back to offline with one warning line.

    wandb.init waits 90 s by default for an unreachable server, then raises CommError (UsageError at
    once when not logged in); lazily, inside fit, either would be a traceback after the first steps.
    """
    import wandb

    w = cfg.logging.wandb
    kwargs = dict(project=w.project, entity=w.entity, group=w.group, tags=list(w.tags),
                  name=f"{cfg.name}/{run.path.name}", id=f"{cfg.name}-{run.path.name}".replace("/", "-"),
                  save_dir=str(run.path), resume="allow", config=as_plain(cfg))
    logger = WandbLogger(mode=mode, settings=wandb.Settings(init_timeout=wandb_init_timeout(cfg)), **kwargs)
    if mode != "online" or rank_zero_only.rank != 0:
        return logger  # other ranks never create a W&B run
    try:
        _ = logger.experiment  # connect now, not lazily in the first logging call
    except wandb.errors.Error as exc:
        wandb.teardown()  # the failed online run still holds its id in wandb's service process
        log.warning("W&B online failed (%s); logging offline to %s instead (upload later with `wandb sync`)",
                    str(exc).splitlines()[0], run.path / "wandb")
        # a new id: wandb's service can keep the failed online run's id "in use" even after teardown
        logger = WandbLogger(mode="offline", **{**kwargs, "id": f"{kwargs['id']}-offline"})
        _ = logger.experiment  # offline needs no server: start it now, so nothing is left to fail later
    return logger


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    """C×H×W in [-1, 1] -> H×W×3 uint8 (first three bands; a single band is repeated)."""
    image = image.detach().float().cpu().clamp(-1, 1)
    image = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    return ((image + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def image_grid(columns: Sequence[torch.Tensor], max_rows: int = 4) -> Image.Image:
    """One row per scene, one column per tensor (each B×C×H×W at the same H×W), 2 px gutters."""
    rows = min(max_rows, columns[0].shape[0])
    height, width = columns[0].shape[-2:]
    canvas = np.full((rows * (height + 2), len(columns) * (width + 2), 3), 255, np.uint8)
    for r in range(rows):
        for c, column in enumerate(columns):
            canvas[r * (height + 2): r * (height + 2) + height, c * (width + 2): c * (width + 2) + width] = \
                _to_uint8(column[r])
    return Image.fromarray(canvas)


def log_image_grid(loggers: Sequence[Logger], run_images: Path, key: str, step: int,
                   columns: Sequence[torch.Tensor], caption: str) -> Path:
    """PNG under `<run>/images/` always; to W&B as well when a WandbLogger is attached."""
    grid = image_grid(columns)
    path = run_images / f"{key.replace('/', '_')}_step{step:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[grid], step=step, caption=[caption])
    return path


def finish_wandb(loggers: Sequence[Logger]) -> None:
    """Close the W&B run: WandbLogger leaves it open, and the next run in this process would reuse it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:  # never start a run to end it
            logger.experiment.finish()
