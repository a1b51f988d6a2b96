"""Data throughput: SynthSat generation (scenes/s) and SatDataModule training batches (samples/s).

Training loader at 64 px and 256 px with 0 and 2 DataLoader workers: shard read, decode, validate,
LR selection, augmentation and collation, i.e. everything a training step waits for.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from data_prep.cli import run as prepare
from satdiffmoe.config import load_config
from satdiffmoe.data.datamodule import SatDataModule

log = logging.getLogger(__name__)
SIZES = {64: 512, 256: 64}  # HR size -> scenes generated
WORKERS = (0, 2)


def _generate(root: Path, hr_size: int, scenes: int) -> float:
    started = time.perf_counter()
    prepare(
        [
            "synthetic",
            "--out",
            str(root),
            "--num-scenes",
            str(scenes),
            "--hr-size",
            str(hr_size),
            "--shard-size",
            str(max(scenes // 8, 1)),
            "--seed",
            "0",
        ]
    )
    return scenes / (time.perf_counter() - started)


def _loader_throughput(root: Path, hr_size: int, workers: int, batches: int) -> float:
    batch_size = 16 if hr_size <= 64 else 4
    cfg = load_config(
        None,
        [
            f"data.root={root}",
            f"data.hr_size={hr_size}",
            f"data.batch_size={batch_size}",
            f"data.num_workers={workers}",
            f"data.epoch_length={batch_size * (batches + 2)}",
        ],
    )
    iterator = iter(SatDataModule(cfg).train_dataloader())
    next(iterator)  # worker start-up and shuffle-buffer fill are not throughput
    started, samples = time.perf_counter(), 0
    for _ in range(batches):
        samples += len(next(iterator)["key"])
    return samples / (time.perf_counter() - started)


def run(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    torch.set_num_threads(1)
    sizes = {size: count // 4 for size, count in SIZES.items()} if args.quick else SIZES
    result: dict[str, list[dict[str, float]]] = {"generator": [], "train_loader": []}
    with tempfile.TemporaryDirectory() as tmp:
        for hr_size, scenes in sizes.items():
            root = Path(tmp) / f"synthsat{hr_size}"
            rate = _generate(root, hr_size, scenes)
            result["generator"].append({"hr_size": hr_size, "scenes": scenes, "scenes_per_s": round(rate, 1)})
            for workers in WORKERS:
                batches = 10 if args.quick else 40
                rate = _loader_throughput(root, hr_size, workers, batches)
                result["train_loader"].append(
                    {"hr_size": hr_size, "workers": workers, "samples_per_s": round(rate, 1)}
                )
                log.info("train loader %d px, %d workers: %.0f samples/s", hr_size, workers, rate)
    return result
