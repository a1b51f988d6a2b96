"""A training trial: train the trial's config with Lightning pruning, then evaluate its best checkpoint.

The pruning callback goes to `training.trainer.build_trainer(..., callbacks=[pruning])`, after the
configured callbacks.

Pruning reports the validation metric through optuna-integration's PyTorchLightningPruningCallback,
which keys reports by epoch; with streaming data an "epoch" is `data.epoch_length` samples, so keep
`train.val_every` at most one epoch's steps or the pruner sees only the first report of each epoch.

Under DDP (`sweeps/distributed.py`) every rank runs `fit_trial` on the same config; rank 0 alone
evaluates. The callback then broadcasts its prune decision inside `fit` and rank 0 raises it
afterwards (`check_pruned`, read from the RDB storage).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig

from ..config import with_overrides

log = logging.getLogger(__name__)


@dataclass
class FittedTrial:
    task: Any
    run: Any  # RunDir
    pruning: Any  # PyTorchLightningPruningCallback


def fit_trial(trial: optuna.Trial, cfg: DictConfig, spec: DictConfig) -> FittedTrial:
    """Train `cfg` with the pruning callback attached (stopped early when the pruner says so)."""
    from optuna_integration import PyTorchLightningPruningCallback

    from ..data.datamodule import SatDataModule
    from ..runs import RunDir, seed_everything
    from ..training.loggers import finish_wandb
    from ..training.trainer import build_task, build_trainer

    # The training run's own W&B run goes to a sibling group, keeping one run per trial in the study group.
    cfg = with_overrides(cfg, {"logging.wandb.group": f"{spec.study}-training"})
    run = RunDir.create(cfg)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    pruning = PyTorchLightningPruningCallback(trial, monitor=spec.prune_monitor)
    trainer = build_trainer(cfg, run, *task.monitor(), callbacks=[pruning])
    log.info("trial %d: training in %s", trial.number, run.path)
    try:
        trainer.fit(task, datamodule=SatDataModule(cfg))
    finally:
        finish_wandb(trainer.loggers)
    return FittedTrial(task, run, pruning)


def train_and_evaluate(trial: optuna.Trial, cfg: DictConfig, spec: DictConfig, evaluator: Callable[[], object],
                       params: dict[str, Any] | None = None, channel=None) -> dict:
    """Fit `cfg`, then evaluate the run's best checkpoint. With a DDP `channel` (rank 0 of a DDP
    training sweep) every rank trains the trial (`distributed.lead_trial`)."""
    from ..training.checkpoints import load_task

    if channel is None:
        fitted = fit_trial(trial, cfg, spec)
    else:
        from .distributed import lead_trial

        fitted = lead_trial(channel, trial, cfg, spec, params)
    fitted.pruning.check_pruned()  # under DDP the prune decision arrives through the storage
    trial.set_user_attr("run", str(fitted.run.path))
    return evaluator().run(load_task(fitted.run.path), cfg)
