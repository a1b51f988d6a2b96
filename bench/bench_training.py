"""Training throughput per stage: samples/s and peak memory of optimizer steps on the experiment's sizes.

    python bench/run.py training [--quick]          # experiments/quickstart.yaml on this machine
    BENCH_TRAINING_CONFIG=experiments/synthsat_256.yaml python bench/run.py training   # on a GPU

Measures the model (encode, UNet forward/backward, AdamW step) on in-memory batches shaped like
SatDataModule's, so data loading is not part of the number (bench_datamodule measures that). Each
stage starts from a fresh VAE saved as a local diffusers folder: weights do not change step cost.
"""

from __future__ import annotations

import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from satdiffmoe.config import load_config
from satdiffmoe.training import task_class
from satdiffmoe.training.autoencoder import AutoencoderTask

log = logging.getLogger(__name__)
STAGES = ("autoencoder", "prior", "satdiffmoe")


def fake_batch(cfg, device: torch.device) -> dict[str, torch.Tensor]:
    b, c, size, n = cfg.data.batch_size, cfg.data.channels, cfg.data.hr_size, 1  # train_lr_policy=pair
    small = size // cfg.data.scale
    return {"hr": torch.rand(b, c, size, size, device=device) * 2 - 1,
            "lr": torch.rand(b, n, c, small, small, device=device) * 2 - 1,
            "lr_mask": torch.ones(b, n, small, small, device=device),
            "lr_valid": torch.ones(b, n, dtype=torch.bool, device=device),
            "dt": torch.full((b, n), -20.0, device=device), "gsd": torch.ones(b, device=device)}


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def time_steps(task, batch, steps: int, warmup: int, device: torch.device) -> float:
    optimizer = task.configure_optimizers()["optimizer"]
    dtype = torch.bfloat16 if "bf16" in task.cfg.train.precision else None
    for index in range(warmup + steps):
        if index == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = task.training_step(batch, index)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def run(args) -> dict:
    config = os.environ.get("BENCH_TRAINING_CONFIG", "experiments/quickstart.yaml")
    quick = bool(getattr(args, "quick", False))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps, warmup = (3, 1) if quick else (20, 3)
    results = {"config": config, "device": str(device), "steps": steps, "threads": torch.get_num_threads(),
               "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        vae_dir = Path(tmp) / "vae"
        AutoencoderTask(load_config(config, ["stage=autoencoder"])).vae.save_pretrained(vae_dir)
        for stage in STAGES:
            overrides = [f"stage={stage}"] + ([] if stage == "autoencoder" else [f"model.vae.pretrained={vae_dir}"])
            cfg = load_config(config, overrides)
            task = task_class(stage)(cfg).to(device).train()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            batch = fake_batch(cfg, device)
            seconds = time_steps(task, batch, steps, warmup, device)
            row = {"samples_per_s": round(steps * cfg.data.batch_size / seconds, 2),
                   "seconds_per_step": round(seconds / steps, 4),
                   "batch_size": cfg.data.batch_size,
                   "peak_memory_mb": round(peak_memory_mb(device), 1),
                   "trainable_params": sum(p.numel() for p in task.parameters() if p.requires_grad)}
            log.info("%s: %s", stage, row)
            results["stages"][stage] = row
    return results
