"""CPU kernels for the quickstart: channels_last, bf16 and `torch.compile` (inductor), each against eager fp32.

    python bench/run.py kernels [--quick]

Issue 31, lever 4: adopt a kernel option only if it pays after its compile time within one quickstart.
Each variant is the project's own switch, so the number is what a user would get by setting it:

    training  train.channels_last=true | train.precision=bf16-mixed | train.compile=true
              on the quickstart `autoencoder` and `satdiffmoe` stages (optimizer steps on in-memory
              batches, bench_training.py's loop), reported as steady samples/s plus the first step's
              seconds (where compilation happens) and the break-even step count against eager;
    sampling  sampler.precision=bf16 | channels_last denoiser and VAE | compiled denoiser, for one
              quickstart evaluation batch (8 scenes × N = 8 LRs, the quickstart's NFE and consensus).

Random weights: step cost does not depend on training. Every variant starts from a fresh task.
The ratios (variant ÷ eager fp32) are the result; absolute numbers depend on the machine.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch
from bench_training import fake_batch, time_steps

from satdiffmoe.config import load_config
from satdiffmoe.data.collate import random_batch
from satdiffmoe.training import task_class
from satdiffmoe.training.autoencoder import AutoencoderTask

log = logging.getLogger(__name__)
CONFIG = "experiments/quickstart.yaml"
TRAINING_VARIANTS = {
    "eager fp32": [],
    "channels_last": ["train.channels_last=true"],
    "bf16-mixed": ["train.precision=bf16-mixed"],
    "compile": ["train.compile=true"],
}
SAMPLING_VARIANTS = ("eager fp32", "channels_last", "bf16", "compile")


def training_row(stage: str, overrides: list[str], vae_dir: Path, steps: int) -> dict:
    extra = [] if stage == "autoencoder" else [f"model.vae.pretrained={vae_dir}"]
    cfg = load_config(CONFIG, [f"stage={stage}", *extra, *overrides])
    task = task_class(stage)(cfg).train()
    if cfg.train.channels_last:  # what Lightning's setup hook does in a real run (training/base.py)
        task.to(memory_format=torch.channels_last)
    cpu = torch.device("cpu")
    batch = fake_batch(cfg, cpu)
    first = time_steps(task, batch, 2, 0, cpu)  # the first two steps hold compilation (and its recompile for grad mode)
    steady = time_steps(task, batch, steps, 0, cpu) / steps
    return {"first_steps_s": round(first, 2), "seconds_per_step": round(steady, 4),
            "samples_per_s": round(cfg.data.batch_size / steady, 2)}


def sampling_row(variant: str, vae_dir: Path, repeats: int) -> dict:
    overrides = ["stage=satdiffmoe", f"model.vae.pretrained={vae_dir}"]
    cfg = load_config(CONFIG, overrides + (["sampler.precision=bf16"] if variant == "bf16" else []))
    task = task_class("satdiffmoe")(cfg).eval()
    if variant == "channels_last":
        task.to(memory_format=torch.channels_last)
    if variant == "compile":
        task.network.compile()
    batch = random_batch(cfg, cfg.data.eval_batch_size, 8)
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        task.sample(batch, cfg.sampler, torch.Generator().manual_seed(0))
        times.append(time.perf_counter() - started)
    steady = sum(times[1:]) / repeats
    return {"first_call_s": round(times[0], 2), "seconds_per_batch": round(steady, 3),
            "seconds_per_image": round(steady / cfg.data.eval_batch_size, 4)}


def with_ratios(rows: dict, key: str) -> dict:
    eager = rows["eager fp32"][key]
    for row in rows.values():
        row["ratio_to_eager"] = round(row[key] / eager, 3)  # < 1: faster than eager fp32
    return rows


def break_even(rows: dict) -> None:
    """Steps after which a variant's extra first-step cost is paid back (None: it never pays)."""
    eager = rows["eager fp32"]
    for row in rows.values():
        saved = eager["seconds_per_step"] - row["seconds_per_step"]
        extra = row["first_steps_s"] - eager["first_steps_s"]
        row["break_even_steps"] = round(max(extra, 0) / saved) if saved > 0 else None


def run(args) -> dict:
    quick = bool(getattr(args, "quick", False))
    steps, repeats = (3, 1) if quick else (20, 2)
    results = {"config": CONFIG, "threads": torch.get_num_threads(), "steps": steps, "training": {}, "sampling": {}}
    with tempfile.TemporaryDirectory() as tmp:
        vae_dir = Path(tmp) / "vae"
        AutoencoderTask(load_config(CONFIG, ["stage=autoencoder"])).vae.save_pretrained(vae_dir)
        for stage in ("autoencoder", "satdiffmoe"):
            rows = {}
            for name, overrides in TRAINING_VARIANTS.items():
                rows[name] = training_row(stage, overrides, vae_dir, steps)
                log.info("training %s %s: %s", stage, name, rows[name])
            break_even(rows)
            results["training"][stage] = with_ratios(rows, "seconds_per_step")
        rows = {}
        for name in SAMPLING_VARIANTS:
            rows[name] = sampling_row(name, vae_dir, repeats)
            log.info("sampling %s: %s", name, rows[name])
        results["sampling"] = with_ratios(rows, "seconds_per_batch")
    return results
