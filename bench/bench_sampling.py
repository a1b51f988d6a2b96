"""Fused-sampler cost at the quickstart size: seconds per image and peak memory over N and NFE, and
the fusion overhead (one fused N-branch run vs N independent single-LR runs at the same NFE).

    .venv/bin/python bench/bench_sampling.py --branches 1 2 4 --nfe 10 --out bench/results/sampling.json

Random weights (speed does not depend on training); the default experiment config (64 px HR, ×4,
VAE [32, 64] -> 16×16×4 latents, UNet [64, 128, 128]). Memory: CUDA peak allocation on GPUs, the
process's peak RSS so far on CPU (monotone, so read it as an upper bound for that row).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch


def build_task(device: str):
    from diffusers import AutoencoderKL

    from satdiffmoe.config import load_config
    from satdiffmoe.training import task_class

    folder = Path(tempfile.mkdtemp()) / "vae"
    defaults = load_config(None, [])
    vae_cfg = defaults.model.vae
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * len(vae_cfg.block_out_channels),
                  up_block_types=("UpDecoderBlock2D",) * len(vae_cfg.block_out_channels),
                  block_out_channels=tuple(vae_cfg.block_out_channels), layers_per_block=vae_cfg.layers_per_block,
                  latent_channels=vae_cfg.latent_channels, norm_num_groups=vae_cfg.norm_num_groups).save_pretrained(folder)
    cfg = load_config(None, [f"model.vae.pretrained={folder}", "logging.wandb.mode=disabled"])
    return task_class("satdiffmoe")(cfg).to(device).eval(), cfg


def scene_batch(cfg, branches: int, device: str) -> dict:
    g = torch.Generator().manual_seed(0)
    lr_size = cfg.data.hr_size // cfg.data.scale
    batch = {"lr": torch.rand(1, branches, 3, lr_size, lr_size, generator=g) * 2 - 1,
             "lr_mask": torch.ones(1, branches, lr_size, lr_size), "lr_valid": torch.ones(1, branches, dtype=torch.bool),
             "dt": torch.linspace(-60, 60, branches)[None], "lr_cloud": torch.zeros(1, branches),
             "lr_doy": torch.full((1, branches), 100.0), "gsd": torch.ones(1), "key": ["bench"],
             "hr": torch.zeros(1, 3, cfg.data.hr_size, cfg.data.hr_size), "hr_mask": torch.ones(1, cfg.data.hr_size, cfg.data.hr_size)}
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed_sample(task, batch, sampler_cfg, device: str) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    task.sample(batch, sampler_cfg, torch.Generator(device=device).manual_seed(0))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - started


def run(args) -> dict:
    """`args` from this module's parser or bench/run.py's (which only has --quick/--device): fill defaults."""
    from satdiffmoe.config import with_overrides

    defaults = vars(parse_args([]))
    if getattr(args, "quick", False):
        defaults.update(branches=[1, 4, 8], nfe=[10, 25])
    args = argparse.Namespace(**{**defaults, **{k: v for k, v in vars(args).items() if k in defaults and v is not None}})
    torch.set_num_threads(args.threads)
    task, cfg = build_task(args.device)
    rows, overhead = [], []
    timed_sample(task, scene_batch(cfg, 1, args.device), with_overrides(cfg, {"sampler.nfe": 2}).sampler, args.device)
    for nfe in args.nfe:
        for branches in args.branches:
            sampler = with_overrides(cfg, {"sampler.nfe": nfe, "sampler.fusion_every": 5}).sampler
            seconds = timed_sample(task, scene_batch(cfg, branches, args.device), sampler, args.device)
            rows.append({"branches": branches, "nfe": nfe, "seconds_per_image": seconds,
                         "peak_memory_mb": peak_memory_mb(args.device)})
            print(json.dumps(rows[-1]), file=sys.stderr)
            if branches > 1 and args.overhead:
                single = scene_batch(cfg, 1, args.device)
                independent = sum(timed_sample(task, single, sampler, args.device) for _ in range(branches))
                overhead.append({"branches": branches, "nfe": nfe, "fused_s": seconds, "independent_s": independent,
                                 "ratio": seconds / independent})
                print(json.dumps(overhead[-1]), file=sys.stderr)
    return {"device": args.device, "threads": args.threads, "hr_size": cfg.data.hr_size,
            "latent_shape": list(task.latent_shape), "rows": rows, "fusion_overhead": overhead}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--branches", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    parser.add_argument("--nfe", type=int, nargs="+", default=[10, 25, 50])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-overhead", dest="overhead", action="store_false", help="skip the independent runs")
    parser.add_argument("--out", default=None, help="write the result JSON here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    result = run(arguments)
    if arguments.out:
        Path(arguments.out).parent.mkdir(parents=True, exist_ok=True)
        Path(arguments.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
