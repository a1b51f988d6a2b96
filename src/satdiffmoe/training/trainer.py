"""The task and the Lightning Trainer a config asks for, shared by `satdiffmoe train` and sweep trials.

    task = build_task(cfg)
    trainer = build_trainer(cfg, run, *task.monitor(), callbacks=[extra, ...])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from ..errors import UserError, user_errors
from ..runs import RunDir
from . import ddp_failures, task_class
from .atomic_checkpoint_io import AtomicCheckpointIO
from .callbacks import TrainingClock, build_callbacks
from .loggers import build_loggers


def build_task(cfg: DictConfig):
    """The LightningModule of `cfg.stage`; a model's ValueError / FileNotFoundError (a bad config value,
    a missing pretrained folder) becomes a one-line UserError."""
    with user_errors():
        return task_class(cfg.stage)(cfg)


def build_trainer(cfg: DictConfig, run: RunDir, monitor: str, monitor_mode: str,
                  callbacks: Sequence[Callback] = ()) -> pl.Trainer:
    """The Trainer for `cfg` with the configured callbacks and loggers, plus `callbacks` (e.g. a sweep's
    pruning callback)."""
    t = cfg.train
    clock = TrainingClock(window=t.log_every)
    torch.set_float32_matmul_precision(t.matmul_precision)
    configured = build_callbacks(cfg, run, monitor, monitor_mode, clock)
    if cfg.logging.progress_bar:
        # The bar reads its metrics (the loss) with .item(): at the default refresh_rate=1 that is one
        # host-device sync per step, which stalls the GPU queue; refresh as often as we log instead.
        configured.append(TQDMProgressBar(refresh_rate=t.log_every))
    try:
        return _trainer(cfg, run, [*configured, *callbacks], clock)
    except (MisconfigurationException, ValueError, TypeError) as exc:
        # accelerator=gpu on a CPU machine, devices=0, precision=17, ...: Lightning's own checks
        raise UserError(f"invalid train.accelerator/devices/precision/strategy ({t.accelerator}, {t.devices}, "
                        f"{t.precision}, {t.strategy}): {str(exc).splitlines()[0]}") from None


def _trainer(cfg: DictConfig, run: RunDir, callbacks: list, clock: TrainingClock) -> pl.Trainer:
    t, d = cfg.train, cfg.data
    return pl.Trainer(
        default_root_dir=str(run.path),
        max_steps=t.max_steps,
        precision=t.precision,
        accumulate_grad_batches=t.accumulate,
        gradient_clip_val=t.grad_clip or None,
        # validation every `val_every` optimizer steps, counted across epochs (streaming data has no
        # natural epoch end); Lightning counts batches, hence the factor
        val_check_interval=t.val_every * t.accumulate,
        check_val_every_n_epoch=None,
        limit_val_batches=math.ceil(d.val_subset / d.eval_batch_size),
        num_sanity_val_steps=0,  # a sanity pass would sample the whole val subset once more
        log_every_n_steps=t.log_every,
        accelerator=t.accelerator,
        devices=t.devices,
        strategy=ddp_failures.strategy(t),  # DDP with the collective timeout train.ddp_timeout_s
        num_nodes=t.num_nodes,
        enable_progress_bar=cfg.logging.progress_bar,
        logger=build_loggers(cfg, run, clock.elapsed),
        callbacks=[*callbacks, ddp_failures.StopLaunchedRanks()],
        plugins=[AtomicCheckpointIO()],  # a kill during a save never corrupts last.ckpt
    )
