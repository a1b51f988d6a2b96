"""Callbacks attached by configuration: checkpoints, EMA, learning rate, wall clock/throughput, parameter
counts, and a stop on a diverged (non-finite) training loss."""

from __future__ import annotations

import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from omegaconf import DictConfig
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ..errors import UserError
from ..runs import RunDir

log = logging.getLogger(__name__)


class TrainingClock(Callback):
    """Logs `wall_time` (seconds since the run started) and `train/samples_per_s` with every training step.

    The elapsed time is part of the checkpoint, so a resumed run continues its wall clock: convergence
    curves against wall time stay comparable across interruptions. Throughput is measured over the
    last `window` optimizer steps and restarts after each validation, so sampling time never counts.
    (Lightning's ThroughputMonitor would name the key `train/samples_per_sec` and log outside
    `self.log`; our log contract is `train/samples_per_s`.)
    """

    def __init__(self, window: int = 10):
        self.offset = 0.0
        self.started = time.perf_counter()
        self.window: deque = deque(maxlen=window + 1)

    def elapsed(self) -> float:
        return self.offset + time.perf_counter() - self.started

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        samples = int(batch["hr"].shape[0]) * trainer.world_size
        self.window.append((time.perf_counter(), samples))
        pl_module.log("wall_time", self.elapsed(), on_step=True, on_epoch=False, rank_zero_only=True)
        if len(self.window) > 1:
            seconds = self.window[-1][0] - self.window[0][0]
            count = sum(n for _, n in list(self.window)[1:])
            pl_module.log("train/samples_per_s", count / seconds, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.window.clear()

    def state_dict(self) -> dict[str, float]:
        return {"elapsed": self.elapsed()}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.offset = float(state_dict["elapsed"])
        self.started = time.perf_counter()


class DivergenceGuard(Callback):
    """Stops training with one clear error once the training loss is NaN/inf (a diverged run).

    Checked every `every` optimizer steps, when the loss is logged anyway, so a GPU queue is not
    synced each step. The decision is reduced over DDP ranks, so every rank stops at the same step
    (a rank stopping alone would leave the others waiting in the gradient all-reduce). `last.ckpt`
    keeps the weights of the last validation.
    """

    def __init__(self, every: int):
        self.every = max(1, every)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None or trainer.global_step % self.every:
            return
        diverged = trainer.strategy.reduce_boolean_decision(not bool(torch.isfinite(loss).all()), all=False)
        if diverged:
            raise UserError(f"the training loss is not finite at step {trainer.global_step}: the run diverged; "
                            "lower train.lr or keep train.grad_clip on, then train again or resume from the "
                            "last good checkpoint (run_id=... resume=true)")


class ParameterCounts(Callback):
    """Logs trainable and total parameter counts once at the start (the paper's "fewer trainable parameters")."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        counts = parameter_counts(pl_module)
        log.info("parameters: %d trainable / %d total", counts["params/trainable"], counts["params/total"])
        for logger in trainer.loggers:
            logger.log_metrics(counts, step=trainer.global_step)


def parameter_counts(module) -> dict[str, int]:
    return {"params/trainable": sum(p.numel() for p in module.parameters() if p.requires_grad),
            "params/total": sum(p.numel() for p in module.parameters())}


class TrainableEMA(Callback):
    """EMA of the trainable parameters only; validation, checkpoints and the end of training see it.

    Lightning's `EMAWeightAveraging` deep-copies and averages the whole LightningModule, the frozen
    VAE (and the baselines' frozen prior) included: constant tensors averaged every step. This keeps a
    copy of the `requires_grad` parameters only (the networks here hold no running-statistics buffers)
    and updates them with one `torch._foreach_lerp_` (`get_ema_multi_avg_fn`). The checkpoint layout
    is Lightning's: `state_dict` = the model with averaged weights, `current_model_state` = the raw
    weights, `averaging_state` = {"n_averaged"}, callback state {"latest_update_step"}; a checkpoint
    written by `EMAWeightAveraging` resumes into it unchanged (tests/training/test_ema.py).
    """

    def __init__(self, decay: float):
        self.decay = float(decay)
        self.update = get_ema_multi_avg_fn(self.decay)
        self.names: list[str] = []
        self.average: list[torch.Tensor] = []
        self.n_averaged = 0
        self.latest_update_step = 0
        self.holds_raw = False  # True once training ended: module and `self.average` swapped

    def _current(self, pl_module: pl.LightningModule) -> list[torch.Tensor]:
        """The live trainable tensors; the average follows them to their device (`setup` runs before
        the strategy moves the module to the GPU)."""
        params = dict(pl_module.named_parameters())
        current = [params[name].detach() for name in self.names]
        if self.average and self.average[0].device != current[0].device:
            self.average = [average.to(value.device) for average, value in zip(self.average, current)]
        return current

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.holds_raw = False
            self.names = [name for name, p in pl_module.named_parameters() if p.requires_grad]
            self.average = [p.clone() for p in self._current(pl_module)]

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if trainer.global_step <= self.latest_update_step:  # no optimizer step yet (gradient accumulation)
            return
        current = self._current(pl_module)
        if self.n_averaged == 0:  # as AveragedModel: the first update copies
            for average, value in zip(self.average, current):
                average.copy_(value)
        else:
            self.update(self.average, current, self.n_averaged)
        self.n_averaged += 1
        self.latest_update_step = trainer.global_step

    def _swap(self, pl_module: pl.LightningModule) -> None:
        for average, current in zip(self.average, self._current(pl_module)):
            held = current.clone()
            current.copy_(average)
            average.copy_(held)

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.average and not self.holds_raw:
            self._swap(pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.average and not self.holds_raw:
            self._swap(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The module leaves `fit` holding the average. A swap, not a copy: `ModelCheckpoint` runs its
        # own `on_train_end` after this one (Lightning orders checkpoint callbacks last) and may write
        # `last.ckpt` there, whose `current_model_state` must still be the raw weights.
        if self.average and not self.holds_raw:
            self._swap(pl_module)
            self.holds_raw = True

    def state_dict(self) -> dict[str, Any]:
        return {"latest_update_step": self.latest_update_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.latest_update_step = int(state_dict["latest_update_step"])

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if not self.average:
            return
        held = {name: value.detach().clone() for name, value in zip(self.names, self.average)}
        if self.holds_raw:  # after training: the module holds the average, `self.average` the raw weights
            checkpoint["current_model_state"] = {**checkpoint["state_dict"], **held}
        else:
            checkpoint["current_model_state"] = checkpoint["state_dict"]
            checkpoint["state_dict"] = {**checkpoint["state_dict"], **held}
        checkpoint["averaging_state"] = {"n_averaged": torch.tensor(self.n_averaged, dtype=torch.long)}

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]) -> None:
        if not self.average:
            return
        # `state_dict` holds the averaged weights in both layouts (Lightning's held every tensor of the
        # module, frozen ones included; only the trainable names are read back)
        averaged = checkpoint["state_dict"]
        self._current(pl_module)
        for average, name in zip(self.average, self.names):
            average.copy_(averaged[name])
        if "current_model_state" in checkpoint and "averaging_state" in checkpoint:
            self.n_averaged = int(checkpoint["averaging_state"]["n_averaged"])
            pl_module.load_state_dict(checkpoint["current_model_state"])
        # else: not written with an EMA; as Lightning's, the first update then copies the live weights


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt` after every validation and at the end of training: what `resume=true` continues from.

    Not `save_last=True` on the top-k callback: since Lightning 2.6 that refreshes last.ckpt only at
    steps where a top-k checkpoint is saved, so a run that stopped improving would resume from its
    best step, and the steps after the last validation (max_steps not a multiple of val_every) were
    never saved. Runs after TrainableEMA's `on_train_end` (Lightning orders checkpoint callbacks last).
    """

    def __init__(self, path: Path):
        super().__init__(dirpath=path.parent, filename=path.stem, monitor=None, save_top_k=1,
                         save_on_train_epoch_end=False, enable_version_counter=False)
        self.path = path
        self.saved_step = -1

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if trainer.global_step != self.saved_step:  # steps trained since the last validation
            trainer.save_checkpoint(self.path)
            self.saved_step = trainer.global_step


def build_callbacks(cfg: DictConfig, run: RunDir, monitor: str, monitor_mode: str, clock: TrainingClock) -> list[Callback]:
    t = cfg.train
    from ..data.datamodule import SkippedRecordsCallback  # counts records the reader skipped

    callbacks: list[Callback] = [
        clock,
        SkippedRecordsCallback(),
        ParameterCounts(),
        DivergenceGuard(every=t.log_every),
        LearningRateMonitor(logging_interval="step"),
        # the train.ckpt_top_k best validations
        ModelCheckpoint(dirpath=run.checkpoints, filename="step{step:06d}", auto_insert_metric_name=False,
                        monitor=monitor, mode=monitor_mode, save_top_k=t.ckpt_top_k),
        LastCheckpoint(run.last_ckpt),
    ]
    if t.ema_decay > 0:
        # validation and checkpoints see the averaged weights, resume restores both
        callbacks.append(TrainableEMA(decay=t.ema_decay))
    return callbacks
