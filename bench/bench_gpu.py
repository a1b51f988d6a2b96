"""GPU performance report: training throughput and MFU (eager bf16 vs tuned), sampling cost, data
loader headroom, and trainable parameters of SatDiffMoE vs the ControlNet and DiffusionSat baselines.

    python bench/run.py gpu --device cuda --out $OUT             # 256 px: experiments/*synthsat_256*.yaml
    python bench/run.py gpu --device cpu --quick --out /tmp/b    # quickstart sizes: a CPU smoke run

Everything is measured in one process and one run, so the ratios compare like with like:

* training: each stage's real LightningModule (`training_step`, `configure_optimizers`, `setup`)
  under a Lightning Trainer, on fixed in-memory batches shaped like SatDataModule's (the loader is
  measured on its own below). Two variants, each a set of config switches: `baseline` = the eager
  diffusers UNet under bf16 autocast (`train.precision=bf16-mixed`) and nothing else; `tuned` = also
  `train.channels_last`, `train.fused_adamw`, `train.compile`, `train.matmul_precision=high` and
  twice the batch when it fits. FLOPs per sample come from one counted forward+backward
  (bench/flops.py); TFLOP/s and MFU follow from the measured samples/s.
* sampling: seconds per image at NFE 50 (fusion every 5) for N in {1, 4, 8} LR branches, with
  `sampler.precision` 32 and bf16; fusion overhead = one fused N=4 run / four single-LR runs.
* data: SatDataModule (the config's workers, pinned memory on CUDA) on shards the synthetic
  generator writes into a temp dir, against the tuned SatDiffMoE consumption rate.

Weights are random (speed does not depend on them): one fresh VAE and prior UNet are saved as local
diffusers folders and every stage starts from them, as in a real run. Environment knobs:
BENCH_GPU_STAGES (comma list, default all three), BENCH_GPU_COMPILE (1/0; default on for CUDA only,
since inductor on a 2-core CPU takes minutes), BENCH_PEAK_TFLOPS (MFU denominator). After every
measurement the results so far go to <out>/gpu.partial.json, so a run cut off by a time limit still
leaves numbers.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from diffusers.models.attention_processor import Attention
from flops import count_flops, peak_tflops
from torch.utils.data import DataLoader, Dataset

from data_prep.cli import run as prepare
from satdiffmoe.config import load_config, with_overrides
from satdiffmoe.data.collate import random_batch
from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.errors import UserError
from satdiffmoe.models.autoencoder import build_vae, downsampling_factor
from satdiffmoe.models.unet import build_unet
from satdiffmoe.training import task_class

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {
    "full": {"satdiffmoe": "experiments/synthsat_256.yaml",
             "controlnet": "experiments/baselines/controlnet_synthsat_256.yaml",
             "diffusionsat": "experiments/baselines/diffusionsat_synthsat_256.yaml"},
    "quick": {"satdiffmoe": "experiments/quickstart.yaml",
              "controlnet": "experiments/baselines/controlnet_quickstart.yaml",
              "diffusionsat": "experiments/baselines/diffusionsat_quickstart.yaml"},
}
NFE, FUSION_EVERY, BRANCHES, OVERHEAD_BRANCHES = 50, 5, (1, 4, 8), 4
QUICK_NFE = 10  # a smoke run still fuses twice; 50 steps of bf16 on a CPU took 2.5 of its 5 minutes


@dataclass(frozen=True)
class Variant:
    name: str
    channels_last: bool
    fused_adamw: bool
    compile: bool
    matmul_precision: str
    batch_scale: int  # tried first; falls back to 1 when the larger batch runs out of GPU memory

    def overrides(self, batch_size: int) -> list[str]:
        return ["train.precision=bf16-mixed", f"train.channels_last={self.channels_last}",
                f"train.fused_adamw={self.fused_adamw}", f"train.compile={self.compile}",
                f"train.matmul_precision={self.matmul_precision}", f"data.batch_size={batch_size}"]


# --------------------------------------------------------------------------------------------- inputs
def scene_batch(cfg, scenes: int, branches: int, device: torch.device) -> dict[str, Any]:
    """A batch as SatDataModule yields it (docs/ARCHITECTURE.md), random pixels."""
    return random_batch(cfg, scenes, branches, device)


def training_batch(cfg, scenes: int, device: torch.device) -> dict[str, Any]:
    """`pair` training gives one LR per scene; stack training (DiffusionSat) pads to data.max_lr."""
    branches = 1 if cfg.data.train_lr_policy == "pair" else cfg.data.max_lr
    return scene_batch(cfg, scenes, branches, device)


class RepeatedBatch(Dataset):
    """The same on-device batch `length` times (batch_size=None loaders pass it through)."""

    def __init__(self, batch: dict[str, Any], length: int):
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.batch


def save_random_networks(cfg, folder: Path) -> list[str]:
    """A fresh VAE and prior UNet as local diffusers folders -> the overrides every stage starts from."""
    vae = build_vae(cfg.model.vae, cfg.data.channels)
    side = cfg.data.hr_size // downsampling_factor(vae)
    latent = cfg.model.vae.latent_channels
    vae.save_pretrained(folder / "vae")
    build_unet(cfg.model.unet, latent, latent, side).save_pretrained(folder / "unet")
    return [f"model.vae.pretrained={folder / 'vae'}", f"model.unet.pretrained={folder / 'unet'}"]


# ------------------------------------------------------------------------------------------ measuring
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS (Linux: KiB)


def release(device: torch.device) -> None:
    gc.collect()
    torch.compiler.reset()  # compiled graphs of the previous task hold its weights
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


class StepTimer(pl.Callback):
    """Wall time of the warm-up steps (compilation lands here) and of the timed steps after them."""

    def __init__(self, device: torch.device, warmup: int, steps: int):
        self.device, self.warmup, self.steps = device, warmup, steps
        self.marks: dict[str, float] = {}

    def _mark(self, name: str) -> None:
        synchronize(self.device)
        self.marks[name] = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if batch_idx == 0:
            self._mark("start")
        if batch_idx == self.warmup:
            self._mark("timed")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx == self.warmup + self.steps - 1:
            self._mark("end")


def flops_per_sample(task, cfg, device: torch.device) -> float:
    """One counted bf16 forward+backward of the training loss on 2 scenes (FLOPs are linear in batch)."""
    scenes = 2
    batch = training_batch(cfg, scenes, device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = task.diffusion_loss(batch, task.step_generator(0), task.cfg.model.cond_dropout)
        loss.backward()

    flops = count_flops(step)
    task.zero_grad(set_to_none=True)
    return flops / scenes


def time_training(cfg, device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    """Train `warmup + steps` optimizer steps of cfg's task with Lightning; time the last `steps`."""
    torch.set_float32_matmul_precision(cfg.train.matmul_precision)
    task = task_class(cfg.stage)(cfg)
    batch = training_batch(cfg, cfg.data.batch_size, device)
    timer = StepTimer(device, warmup, steps)
    trainer = pl.Trainer(
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=cfg.train.precision,
        max_steps=warmup + steps, gradient_clip_val=cfg.train.grad_clip or None, callbacks=[timer],
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(task, train_dataloaders=DataLoader(RepeatedBatch(batch, warmup + steps), batch_size=None))
    seconds_per_step = (timer.marks["end"] - timer.marks["timed"]) / steps
    warmup_s = timer.marks["timed"] - timer.marks["start"]
    return {"batch_size": cfg.data.batch_size, "precision": cfg.train.precision,
            "channels_last": cfg.train.channels_last, "fused_adamw": cfg.train.fused_adamw,
            "compile": cfg.train.compile, "matmul_precision": cfg.train.matmul_precision,
            "seconds_per_step": seconds_per_step, "samples_per_s": cfg.data.batch_size / seconds_per_step,
            "peak_memory_mb": peak_memory_mb(device), "warmup_s": warmup_s,
            # the first steps of a compiled model include tracing and code generation
            "compile_s": max(0.0, warmup_s - warmup * seconds_per_step) if cfg.train.compile else 0.0}


def measure_variant(config: str, overrides: list[str], variant: Variant, batch_size: int,
                    device: torch.device, warmup: int, steps: int) -> dict[str, Any]:
    for scale in sorted({variant.batch_scale, 1}, reverse=True):
        release(device)
        cfg = load_config(ROOT / config, overrides + variant.overrides(batch_size * scale))
        try:
            return time_training(cfg, device, warmup, steps)
        except torch.cuda.OutOfMemoryError:
            log.warning("%s: batch %d does not fit; retrying with %d", variant.name, batch_size * scale, batch_size)
    raise RuntimeError("unreachable: the scale-1 attempt either returns or raises")


def measure_stage(stage: str, config: str, overrides: list[str], variants: list[Variant],
                  device: torch.device, peak: float, warmup: int, steps: int) -> dict[str, Any]:
    cfg = load_config(ROOT / config, overrides)
    task = task_class(stage)(cfg).to(device).train()
    row: dict[str, Any] = {"config": config,
                           "trainable_params": sum(p.numel() for p in task.parameters() if p.requires_grad),
                           "flops_per_sample": flops_per_sample(task, cfg, device),
                           # diffusers picks AttnProcessor2_0 (torch SDPA: flash / memory-efficient kernels)
                           "attention": sorted({type(m.processor).__name__ for m in task.modules()
                                                if isinstance(m, Attention)})}
    del task
    for variant in variants:
        result = measure_variant(config, overrides, variant, cfg.data.batch_size, device, warmup, steps)
        result["flops_per_step"] = row["flops_per_sample"] * result["batch_size"]
        result["tflops"] = row["flops_per_sample"] * result["samples_per_s"] / 1e12
        result["mfu"] = result["tflops"] / peak
        log.info("%s %s: %.1f samples/s, %.3f s/step, %.0f MB, MFU %.1f%%", stage, variant.name,
                 result["samples_per_s"], result["seconds_per_step"], result["peak_memory_mb"], 100 * result["mfu"])
        row[variant.name] = result
    row["speedup"] = row["tuned"]["samples_per_s"] / row["baseline"]["samples_per_s"]
    return row


def measure_sampling(config: str, overrides: list[str], device: torch.device, nfe: int) -> dict[str, Any]:
    """Seconds per image (one scene) over N and sampler.precision, and the fusion overhead."""
    release(device)
    cfg = load_config(ROOT / config, overrides)
    task = task_class("satdiffmoe")(cfg).to(device).eval()

    def seconds(branches: int, precision: str, steps: int = nfe) -> float:
        sampler = with_overrides(cfg, {"sampler.nfe": steps, "sampler.fusion_every": FUSION_EVERY,
                                       "sampler.precision": precision}).sampler
        batch = scene_batch(cfg, 1, branches, device)
        synchronize(device)
        started = time.perf_counter()
        task.sample(batch, sampler, torch.Generator(device=device).manual_seed(0))
        synchronize(device)
        return time.perf_counter() - started

    rows, overhead = [], {}
    for precision in ("32", "bf16"):
        seconds(max(BRANCHES), precision, steps=2)  # warm-up: kernels and allocator for the largest call
        for branches in BRANCHES:
            rows.append({"precision": precision, "branches": branches, "seconds_per_image": seconds(branches, precision)})
        fused = next(r["seconds_per_image"] for r in rows
                     if r["precision"] == precision and r["branches"] == OVERHEAD_BRANCHES)
        independent = sum(seconds(1, precision) for _ in range(OVERHEAD_BRANCHES))
        overhead[precision] = {"fused_s": fused, "independent_s": independent, "ratio": fused / independent}
        log.info("sampling %s: %s; fusion overhead %.2f", precision,
                 [round(r["seconds_per_image"], 3) for r in rows if r["precision"] == precision],
                 overhead[precision]["ratio"])
    return {"nfe": nfe, "fusion_every": FUSION_EVERY, "hr_size": cfg.data.hr_size,
            "latent_shape": list(task.latent_shape), "rows": rows, "fusion_overhead": overhead}


def measure_loader(config: str, overrides: list[str], folder: Path, batch_size: int, workers: int,
                   scenes: int, batches: int) -> dict[str, Any]:
    """Training batches/s of SatDataModule on freshly generated SynthSat shards (after worker start-up)."""
    cfg = load_config(ROOT / config, overrides)
    prepare(["synthetic", "--out", str(folder), "--num-scenes", str(scenes), "--hr-size", str(cfg.data.hr_size),
             "--scale", str(cfg.data.scale), "--shard-size", str(max(scenes // 8, 1)), "--seed", "0"])
    cfg = with_overrides(cfg, {"data.root": str(folder), "data.batch_size": batch_size, "data.num_workers": workers,
                               "data.epoch_length": batch_size * (batches + 1 + workers)})
    loader = SatDataModule(cfg).train_dataloader()
    iterator = iter(loader)
    next(iterator)  # worker start-up and the shuffle buffer's first fill are not throughput
    started = time.perf_counter()
    samples = sum(len(next(iterator)["key"]) for _ in range(batches))
    rate = samples / (time.perf_counter() - started)
    log.info("loader: %d workers, batch %d: %.1f samples/s", workers, batch_size, rate)
    return {"samples_per_s": rate, "workers": workers, "batch_size": batch_size,
            "pin_memory": loader.pin_memory, "persistent_workers": loader.persistent_workers}


# ----------------------------------------------------------------------------------------------- run
def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The issue's goals, each with its measured value and whether it is met."""
    training, params = result["training"], result["params"]
    out = {}
    if "satdiffmoe" in training:
        moe = training["satdiffmoe"]
        out["train_speedup"] = {"value": moe["speedup"], "min": 2.0}
        out["tuned_mfu"] = {"value": moe["tuned"]["mfu"], "min": 0.25}
        if "dataloader" in result:
            out["loader_headroom"] = {"value": result["dataloader"]["ratio"], "min": 3.0}
    overhead = result["sampling"]["fusion_overhead"]
    out["fusion_overhead_n4"] = {"value": overhead["bf16" if "bf16" in overhead else "32"]["ratio"], "max": 1.1}
    baselines = [params[s] for s in ("controlnet", "diffusionsat") if s in params]
    if "satdiffmoe" in params and baselines:
        out["trainable_params_vs_fewest_baseline"] = {"value": params["satdiffmoe"] / min(baselines), "max": 1.0}
    for goal in out.values():
        goal["met"] = goal["value"] >= goal["min"] if "min" in goal else goal["value"] <= goal["max"]
    return out


def run(args) -> dict[str, Any]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cpu":
        # One thread: on a shared CPU, OpenMP threads spin-waiting for each other made the tiny
        # quickstart step ~100x slower (3.6 s instead of 0.03 s, measured on the 2-core CI machine).
        torch.set_num_threads(1)
    quick = bool(args.quick)
    configs = CONFIGS["quick" if quick else "full"]
    stages = os.environ.get("BENCH_GPU_STAGES", ",".join(configs)).split(",")
    if set(stages) - set(configs):
        raise UserError(f"BENCH_GPU_STAGES={','.join(stages)} names an unknown stage; choose from {', '.join(configs)}")
    compile_tuned = os.environ.get("BENCH_GPU_COMPILE", "1" if device.type == "cuda" else "0") == "1"
    variants = [Variant("baseline", False, False, False, "highest", 1),
                Variant("tuned", True, True, compile_tuned, "high", 2)]
    warmup, steps = (1, 1) if quick else (3, 20)
    partial = Path(args.out) / "gpu.partial.json"
    peak = peak_tflops(device)
    result: dict[str, Any] = {"device": str(device), "quick": quick, "configs": configs,
                              "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                              "peak_tflops": peak["tflops"], "peak_source": peak["source"],
                              "peak_memory": "torch.cuda.max_memory_allocated per measurement" if device.type == "cuda"
                              else "process peak RSS so far (monotone: an upper bound per row)",
                              "training": {}, "params": {}}

    def checkpoint() -> None:
        partial.write_text(json.dumps(result, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        overrides = ["logging.wandb.mode=disabled", "logging.progress_bar=false"]
        overrides += ["data.batch_size=4"] if quick else []  # a smoke run: bf16 steps on a CPU are slow
        overrides += save_random_networks(load_config(ROOT / configs["satdiffmoe"], overrides), Path(tmp))
        for stage in stages:
            row = measure_stage(stage, configs[stage], overrides, variants, device, peak["tflops"], warmup, steps)
            result["training"][stage] = row
            result["params"][stage] = row["trainable_params"]
            checkpoint()
        result["sampling"] = measure_sampling(configs["satdiffmoe"], overrides, device, QUICK_NFE if quick else NFE)
        checkpoint()
        if "satdiffmoe" in result["training"]:
            tuned = result["training"]["satdiffmoe"]["tuned"]
            workers = 2 if quick else load_config(ROOT / configs["satdiffmoe"], []).data.num_workers
            loader = measure_loader(configs["satdiffmoe"], overrides, Path(tmp) / "shards", tuned["batch_size"],
                                    workers, scenes=32 if quick else 128, batches=4 if quick else 30)
            loader["consumption_samples_per_s"] = tuned["samples_per_s"]
            loader["ratio"] = loader["samples_per_s"] / tuned["samples_per_s"]
            result["dataloader"] = loader
    result["targets"] = targets(result)
    checkpoint()
    return result
