"""A training trial: train the trial's config with Lightning pruning, then evaluate its best checkpoint.

The training engineer's `build_trainer` takes no extra callbacks, so the pruning callback is appended
to the built Trainer's callback list before `fit` (Lightning reads that list at every hook).

Pruning reports the validation metric through optuna-integration's PyTorchLightningPruningCallback,
which keys reports by epoch; with streaming data an "epoch" is `data.epoch_length` samples, so keep
`train.val_every` at most one epoch's steps or the pruner sees only the first report of each epoch.

DDP (the agreed approach, docs/sweeps.md; not wired into the worker loop yet): rank 0 asks Optuna for
the trial, the other ranks wrap `None` in optuna_integration.TorchDistributedTrial and receive rank
0's parameters, so every rank trains the same config; the pruning callback broadcasts its decision
and needs RDBStorage under DDP.
"""

from __future__ import annotations

import logging
from typing import Callable

import optuna
from omegaconf import DictConfig

from ..config import with_overrides

log = logging.getLogger(__name__)


def train_and_evaluate(trial: optuna.Trial, cfg: DictConfig, spec: DictConfig, evaluator: Callable[[], object]) -> dict:
    """Fit `cfg` (pruned early when the pruner says so), then evaluate the run's best checkpoint."""
    from optuna_integration import PyTorchLightningPruningCallback

    from ..data.datamodule import SatDataModule
    from ..runs import RunDir, seed_everything
    from ..training.checkpoints import load_task
    from ..training.entry import build_task, build_trainer

    # The training run's own W&B run goes to a sibling group, keeping one run per trial in the study group.
    cfg = with_overrides(cfg, {"logging.wandb.group": f"{spec.study}-training"})
    run = RunDir.create(cfg)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    trainer = build_trainer(cfg, run, *task.monitor())
    pruning = PyTorchLightningPruningCallback(trial, monitor=spec.prune_monitor)
    trainer.callbacks.append(pruning)
    log.info("trial %d: training in %s", trial.number, run.path)
    trainer.fit(task, datamodule=SatDataModule(cfg))
    pruning.check_pruned()  # under DDP the prune decision arrives through the storage
    trial.set_user_attr("run", str(run.path))
    return evaluator().run(load_task(run.path), cfg)
