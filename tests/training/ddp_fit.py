"""Run by test_ddp.py in a subprocess: `python ddp_fit.py RUN_ROOT AE_RUN` trains the prior for a few
steps with Trainer(strategy="ddp", devices=2) on CPU (gloo). Lightning relaunches this script once
per extra rank, so it must be an importable file, not a `python -c` string."""

import sys

import torch
from training_toys import FixedDataModule, tiny_batch, tiny_config

from satdiffmoe.runs import RunDir, seed_everything
from satdiffmoe.training.trainer import build_task, build_trainer

if __name__ == "__main__":
    torch.set_num_threads(1)
    run_root, ae_run = sys.argv[1], sys.argv[2]
    cfg = tiny_config(run_root, "stage=prior", f"init.vae_ckpt={ae_run}", "run_id=ddp", "train.accelerator=cpu",
                      "train.devices=2", "train.strategy=ddp", "train.max_steps=2", "train.ema_decay=0.9")
    run = RunDir.create(cfg)
    seed_everything(cfg.seed)
    task = build_task(cfg)
    trainer = build_trainer(cfg, run, *task.monitor())
    trainer.fit(task, datamodule=FixedDataModule(tiny_batch(), steps_per_epoch=2))
    if trainer.is_global_zero:
        print(f"WORLD_SIZE={trainer.world_size} GLOBAL_STEP={trainer.global_step}")
