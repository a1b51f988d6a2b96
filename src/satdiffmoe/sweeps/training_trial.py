"""A training trial: train the trial's config with Lightning pruning on the validation metric.

The pruning callback goes to `training.trainer.build_trainer(..., callbacks=[pruning])`, after the
configured callbacks. objective.py evaluates the trained run afterwards.

Pruning reports the validation metric through optuna-integration's PyTorchLightningPruningCallback,
which keys reports by epoch; with streaming data an "epoch" is `data.epoch_length` samples, so keep
`train.val_every` at most one epoch's steps or the pruner sees only the first report of each epoch.

Under DDP (ddp_trials.py) every rank runs `fit_trial` on the same config; rank 0 alone evaluates.
The callback then broadcasts its prune decision inside `fit` and rank 0 raises it afterwards
(`check_pruned`, read from the RDB storage).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig
from optuna_integration import PyTorchLightningPruningCallback

from .. import interrupts
from ..config import with_overrides
from ..data.datamodule import SatDataModule
from ..runs import RunDir, seed_everything
from ..training.loggers import finish_wandb
from ..training.trainer import build_task, build_trainer

log = logging.getLogger(__name__)


@dataclass
class FittedTrial:
    task: Any
    run: RunDir
    pruning: PyTorchLightningPruningCallback


class HeldPruningCallback(PyTorchLightningPruningCallback):
    """Reports to the study with Ctrl-C / SIGTERM held until the write is done: a signal inside it
    would leave the storage's session half-committed, and Optuna's FAIL write for the trial would
    then raise."""

    def on_validation_end(self, trainer, pl_module) -> None:
        with interrupts.held():
            super().on_validation_end(trainer, pl_module)


def fit_trial(trial: optuna.Trial, cfg: DictConfig, spec: DictConfig) -> FittedTrial:
    """Train `cfg` with the pruning callback attached (stopped early when the pruner says so)."""
    # The training run's own W&B run goes to a sibling group, keeping one run per trial in the study group.
    cfg = with_overrides(cfg, {"logging.wandb.group": f"{spec.study}-training"})
    run = RunDir.create(cfg)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    pruning = HeldPruningCallback(trial, monitor=spec.prune_monitor)
    trainer = build_trainer(cfg, run, *task.monitor(), callbacks=[pruning])
    log.info("trial %d: training in %s", trial.number, run.path)
    try:
        with interrupts.released():  # the objective holds signals over its storage writes (study.py)
            trainer.fit(task, datamodule=SatDataModule(cfg))
    finally:
        finish_wandb(trainer.loggers)
    return FittedTrial(task, run, pruning)
