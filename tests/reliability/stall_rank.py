"""Run `satdiffmoe ARGS` where DDP rank 1 stops taking part at step 1 without dying: it sleeps inside a
training step, as a rank stuck on I/O or in a deadlock would.

    python stall_rank.py train tiny.yaml train.devices=2 train.strategy=ddp ...

Lightning starts rank 1 by running this same script again, so the stall is installed on every rank
and fires on rank 1 only.
"""

from __future__ import annotations

import sys
import time

import lightning.pytorch as pl

import satdiffmoe.training.trainer as trainer_module
from satdiffmoe.cli import main


class StallRankOne(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_rank == 1 and trainer.global_step >= 1:
            print("rank 1 stalls", file=sys.stderr, flush=True)
            while True:  # alive, never entering the next collective
                time.sleep(1)


def with_stall(build):
    def build_callbacks(*args, **kwargs):
        return [*build(*args, **kwargs), StallRankOne()]
    return build_callbacks


if __name__ == "__main__":
    trainer_module.build_callbacks = with_stall(trainer_module.build_callbacks)
    sys.exit(main(sys.argv[1:]))
