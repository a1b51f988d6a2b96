"""Validate one checkpoint with the project's Trainer on DEVICES CPU processes (gloo) and write the metrics.

    python ddp_validate.py CKPT DATA_ROOT RUN_ROOT DEVICES OUT_JSON [STAGE]

With DEVICES=2 Lightning's DDP launcher starts the second rank by re-running this script; rank 0
writes OUT_JSON. Validation metrics must not depend on DEVICES (tests/reliability/test_ddp_reduction.py,
tests/baselines/test_regression_ddp.py). STAGE (default autoencoder) is the checkpoint's stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from satdiffmoe.config import load_config
from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.runs import RunDir
from satdiffmoe.training.checkpoints import load_task
from satdiffmoe.training.trainer import build_trainer

TINY = Path(__file__).with_name("tiny.yaml")


def main(ckpt: str, data: str, run_root: str, devices: int, out: str, stage: str = "autoencoder") -> None:
    torch.set_num_threads(1)
    cfg = load_config(TINY, [f"data.root={data}", f"run_root={run_root}", f"run_id=validate{devices}",
                             f"stage={stage}", "data.eval_batch_size=2", "data.val_subset=16",
                             f"train.devices={devices}", f"train.strategy={'ddp' if devices > 1 else 'auto'}"])
    task = load_task(ckpt, expect_stage=stage)
    trainer = build_trainer(cfg, RunDir.create(cfg), *task.monitor())
    metrics = trainer.validate(task, datamodule=SatDataModule(cfg), verbose=False)[0]
    if trainer.is_global_zero:
        Path(out).write_text(json.dumps({k: float(v) for k, v in metrics.items()}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], *sys.argv[6:7])
