"""`satdiffmoe train CONFIG [key=value ...]`: config -> run folder -> data -> task -> Lightning Trainer -> fit.

    satdiffmoe train experiments/quickstart.yaml stage=autoencoder run_id=ae
    satdiffmoe train experiments/quickstart.yaml stage=prior init.vae_ckpt=runs/quickstart/ae
    satdiffmoe train experiments/quickstart.yaml stage=satdiffmoe init.prior_ckpt=runs/quickstart/prior
    satdiffmoe train experiments/quickstart.yaml run_id=ae resume=true      # continue the exact run
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from ..config import load_config
from ..errors import UserError
from ..runs import RUN_ID_ENV, RunDir, is_launched_rank, seed_everything
from . import task_class
from .atomic_checkpoint_io import AtomicCheckpointIO
from .callbacks import TrainingClock, build_callbacks
from .checkpoints import check_fits
from .loggers import build_loggers, finish_wandb

log = logging.getLogger(__name__)


def build_task(cfg: DictConfig):
    return task_class(cfg.stage)(cfg)


def resume_checkpoint(cfg: DictConfig, run: RunDir) -> str | None:
    """`resume=true` -> this run's last.ckpt; `ckpt=...` -> that file (or a run folder's last.ckpt)."""
    if cfg.resume:
        if not run.last_ckpt.is_file():
            raise UserError(f"resume=true but {run.last_ckpt} does not exist; pass the run_id of an earlier run "
                            "(run_id=...) or drop resume=true")
        return str(run.last_ckpt)
    if cfg.ckpt:
        path = Path(cfg.ckpt)
        path = path / "checkpoints" / "last.ckpt" if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"ckpt={cfg.ckpt} is not a checkpoint file or a run folder with checkpoints/last.ckpt")
        return str(path)
    return None


def build_trainer(cfg: DictConfig, run: RunDir, monitor: str, monitor_mode: str) -> pl.Trainer:
    t = cfg.train
    clock = TrainingClock(window=t.log_every)
    torch.set_float32_matmul_precision(t.matmul_precision)
    callbacks = build_callbacks(cfg, run, monitor, monitor_mode, clock)
    if cfg.logging.progress_bar:
        # The bar reads its metrics (the loss) with .item(): at the default refresh_rate=1 that is one
        # host-device sync per step, which stalls the GPU queue; refresh as often as we log instead.
        callbacks.append(TQDMProgressBar(refresh_rate=t.log_every))
    try:
        return _trainer(cfg, run, callbacks, clock)
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
        strategy=t.strategy,
        num_nodes=t.num_nodes,
        enable_progress_bar=cfg.logging.progress_bar,
        logger=build_loggers(cfg, run, clock.elapsed),
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],  # a kill during a save never corrupts last.ckpt
    )


def train_command(args) -> int:
    cfg = load_config(args.config, args.overrides)
    if cfg.resume and not cfg.run_id:
        raise UserError("resume=true needs the run_id of the run to continue (run_id=...)")
    from ..data.datamodule import SatDataModule

    if cfg.run_id and not cfg.resume and not is_launched_rank():
        existing = RunDir(Path(cfg.run_root) / cfg.name / str(cfg.run_id))
        if existing.holds_a_run():  # training again would mix two runs' metrics and checkpoints
            raise UserError(f"run folder {existing.path} already holds a run; add resume=true to continue it, "
                            "or choose a new run_id (or none, for a fresh timestamped folder)")
        if existing.metrics_log.is_file():  # a run stopped before its first checkpoint: keep its lines apart
            aside = existing.metrics_log.with_name(f"metrics.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
            os.replace(existing.metrics_log, aside)
            log.warning("%s had no checkpoint; its metric log was moved to %s", existing.path, aside.name)
    run = RunDir.create(cfg)
    ckpt_path = resume_checkpoint(cfg, run)
    seed_everything(cfg.seed)
    datamodule = SatDataModule(cfg)
    task = build_task(cfg)
    if ckpt_path:
        check_fits(ckpt_path, task)
    trainer = build_trainer(cfg, run, *task.monitor())
    log.info("training stage %s in %s", cfg.stage, run.path)
    os.environ[RUN_ID_ENV] = run.path.name  # DDP children re-run this command: same folder (runs.py)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:
        if not trainer.interrupted:
            raise
        # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown; say what to do, exit 130
        print(f"interrupted at step {trainer.global_step}; continue with run_id={run.path.name} resume=true "
              f"(from the last checkpoint in {run.checkpoints})", file=sys.stderr)
        return 130
    finally:
        os.environ.pop(RUN_ID_ENV, None)
        finish_wandb(trainer.loggers)
    if trainer.is_global_zero:
        print(run.path)
    return 0
