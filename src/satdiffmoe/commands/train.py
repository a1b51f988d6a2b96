"""`satdiffmoe train CONFIG [key=value ...]`: config -> run folder -> data -> task -> Lightning Trainer -> fit.

    satdiffmoe train experiments/quickstart.yaml stage=autoencoder run_id=ae
    satdiffmoe train experiments/quickstart.yaml stage=prior init.vae_ckpt=runs/quickstart/ae
    satdiffmoe train experiments/quickstart.yaml stage=satdiffmoe init.prior_ckpt=runs/quickstart/prior
    satdiffmoe train experiments/quickstart.yaml run_id=ae resume=true      # continue the exact run

The task and Trainer come from the library (`training.trainer`); this module adds what only the
command does: run-folder checks, resuming, Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from . import add_command, add_config_arguments

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ..runs import RunDir

log = logging.getLogger(__name__)

HELP = ("train the stage named in the config (autoencoder, prior, satdiffmoe, controlnet, diffusionsat, "
        "highresnet, rams, srcnn)")


def register(subparsers) -> None:
    add_config_arguments(add_command(subparsers, "train", HELP))


def resume_checkpoint(cfg: DictConfig, run: RunDir) -> str | None:
    """`resume=true` -> this run's last.ckpt; `ckpt=...` -> that file (or a run folder's last.ckpt)."""
    from ..errors import UserError

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


def run(args) -> int:
    from ..config import load_config
    from ..data.collate import check_batch_memory
    from ..data.datamodule import SatDataModule
    from ..errors import UserError
    from ..interrupts import Interrupted
    from ..runs import RUN_ID_ENV, RunDir, is_launched_rank, seed_everything
    from ..training.checkpoints import check_fits
    from ..training.ddp_failures import describe, is_collective_failure
    from ..training.loggers import finish_wandb
    from ..training.trainer import build_task, build_trainer

    cfg = load_config(args.config, args.overrides)
    if cfg.resume and not cfg.run_id:
        raise UserError("resume=true needs the run_id of the run to continue (run_id=...)")
    if cfg.run_id and not cfg.resume and not is_launched_rank():
        existing = RunDir(Path(cfg.run_root) / cfg.name / str(cfg.run_id))
        if existing.holds_a_run():  # training again would mix two runs' metrics and checkpoints
            raise UserError(f"run folder {existing.path} already holds a run; add resume=true to continue it, "
                            "or choose a new run_id (or none, for a fresh timestamped folder)")
        if existing.metrics_log.is_file():  # a run stopped before its first checkpoint: keep its lines apart
            aside = existing.metrics_log.with_name(f"metrics.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
            os.replace(existing.metrics_log, aside)
            log.warning("%s had no checkpoint; its metric log was moved to %s", existing.path, aside.name)
    from ..training.loggers import wandb_mode

    wandb_mode(cfg.logging.wandb.mode)  # a bad WANDB_MODE is refused before the run folder appears
    d = cfg.data
    check_batch_memory(d, d.batch_size, 1 if d.train_lr_policy == "pair" else d.max_lr, "data.batch_size")
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
        # Lightning turns Ctrl-C (and SIGTERM, which raises the same KeyboardInterrupt: interrupts.py) into
        # sys.exit(1) after its graceful shutdown; say what to do, exit 130 / 143
        if not run.last_ckpt.is_file():  # stopped before the first validation: resume=true would find nothing
            raise Interrupted(f"interrupted at step {trainer.global_step}, before the first checkpoint: nothing was "
                              f"saved; start again with run_id={run.path.name} (without resume=true)") from None
        raise Interrupted(f"interrupted at step {trainer.global_step}; continue with run_id={run.path.name} "
                          f"resume=true (from the last checkpoint in {run.checkpoints})") from None
    except Exception as exc:
        if trainer.world_size > 1 and is_collective_failure(exc):  # a rank died or hangs (ddp_failures.py)
            then = (f"; continue with run_id={run.path.name} resume=true once every rank can run"
                    if run.last_ckpt.is_file() else "; no checkpoint was written yet")
            raise UserError(describe(exc, cfg.train, trainer.global_rank) + then) from exc
        raise
    finally:
        os.environ.pop(RUN_ID_ENV, None)
        finish_wandb(trainer.loggers)
    if trainer.is_global_zero:
        print(run.path)
    return 0
