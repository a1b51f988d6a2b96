"""Fault injector: SIGKILL a process while it writes checkpoints through the trainer's CheckpointIO.

    python save_until_killed.py RUN_ROOT KILLS   ->  prints {"kills", "corrupt", "tmpdir_leftovers", "folder"}

Imports happen once; each round forks a writer that saves `last.ckpt` (~40 MB) in a loop through
`build_trainer(...).strategy.checkpoint_io`, exactly what Lightning's ModelCheckpoint calls, and kills
it at a random moment. After each kill `last.ckpt` must load completely (weights_only=True).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

import torch

from satdiffmoe.config import load_config
from satdiffmoe.runs import RunDir
from satdiffmoe.training.trainer import build_trainer

TINY = Path(__file__).with_name("tiny.yaml")


def write_forever(checkpoint_io, path: Path) -> None:
    step = 0
    while True:
        checkpoint_io.save_checkpoint({"step": step, "w": torch.full((10_000_000,), float(step))}, path)
        step += 1


def is_complete(path: Path) -> bool:
    try:
        state = torch.load(path, weights_only=True)
    except Exception:  # noqa: BLE001  any failure to read counts as a corrupt file
        return False
    return bool((state["w"] == state["step"]).all())


def main(run_root: str, kills: int) -> dict:
    torch.set_num_threads(1)
    cfg = load_config(TINY, [f"run_root={run_root}", "run_id=atomic"])
    run = RunDir.create(cfg)
    checkpoint_io = build_trainer(cfg, run, "val/loss", "min").strategy.checkpoint_io
    target, rng, corrupt = run.last_ckpt, random.Random(0), 0
    checkpoint_io.save_checkpoint({"step": -1, "w": torch.full((10_000_000,), -1.0)}, target)
    for _ in range(kills):
        pid = os.fork()
        if pid == 0:
            write_forever(checkpoint_io, target)
        time.sleep(rng.uniform(0.05, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        corrupt += not is_complete(target)
    leftovers = sorted(p.name for p in Path(tempfile.gettempdir()).iterdir() if p.is_file())
    return {"kills": kills, "corrupt": corrupt, "tmpdir_leftovers": leftovers,
            "folder": sorted(p.name for p in run.checkpoints.iterdir())}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
