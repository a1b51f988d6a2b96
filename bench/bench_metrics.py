"""Evaluation-metric cost: CPU seconds per image of every metric in evaluation/metrics.py.

    .venv/bin/python bench/run.py metrics --out bench/results

64×64 RGB, batch 8, one torch thread, CPU. Per-image metrics run on the batch; set metrics (swd,
fid, kid) take the batch as an 8-image set against another 8-image set, so their per-image figure
includes the fixed per-set part (FID's 2048×2048 eigenvalues) spread over 8 images. CPU seconds are
`time.process_time()` of the median of `repeats` calls after one warm-up call. Adding a metric =
adding one entry to `METRICS`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from satdiffmoe.evaluation import metrics as M

BATCH, SIZE, NUM_LR, SCALE = 8, 64, 4, 4

# name -> metric on one batch `b` (inputs and the loaded networks, see `inputs`)
METRICS: dict[str, Callable[[dict], object]] = {
    "psnr": lambda b: M.psnr(b["pred"], b["hr"]),
    "ssim": lambda b: M.ssim(b["pred"], b["hr"]),
    "cpsnr": lambda b: M.cpsnr(b["pred"], b["hr"], b["hr_mask"]),
    "cssim": lambda b: M.cssim(b["pred"], b["hr"], b["hr_mask"]),
    "lr_psnr": lambda b: M.lr_psnr(b["pred"], b["lr"], b["lr_valid"], b["lr_mask"]),
    "lpips": lambda b: M.lpips(b["pred"], b["hr"], b["lpips"]),
    "swd": lambda b: M.sliced_wasserstein(b["hr"], b["pred"]),
    "fid": lambda b: M.inception_scores(b["hr"], b["pred"], b["inception"], ["fid"]),
    "kid": lambda b: M.inception_scores(b["hr"], b["pred"], b["inception"], ["kid"]),
}
NEEDS = {"lpips": "lpips", "fid": "inception", "kid": "inception"}  # metric -> network in the batch
# network -> (why it cannot load, or None; loader)
NETWORKS: dict[str, tuple[Callable[[], str | None], Callable[[], torch.nn.Module]]] = {
    "lpips": (lambda: M.lpips_unavailable(None, 3), lambda: M.load_lpips(None)),
    "inception": (lambda: M.inception_unavailable(None, 3), lambda: M.inception_features(None)),
}


def textured(count: int, size: int, generator: torch.Generator) -> torch.Tensor:
    smooth = F.interpolate(torch.rand(count, 3, size // 8, size // 8, generator=generator), size=(size, size),
                           mode="bicubic", align_corners=False)
    return (smooth * 1.6 - 0.8 + 0.1 * torch.randn(count, 3, size, size, generator=generator)).clamp(-1, 1)


def inputs() -> dict:
    g = torch.Generator().manual_seed(0)
    hr = textured(BATCH, SIZE, g)
    lr = F.interpolate(hr, scale_factor=1 / SCALE, mode="area")[:, None].repeat(1, NUM_LR, 1, 1, 1)
    return {"hr": hr, "pred": (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(-1, 1),
            "hr_mask": torch.ones(BATCH, SIZE, SIZE), "lr": lr, "lr_mask": torch.ones(BATCH, NUM_LR, *lr.shape[-2:]),
            "lr_valid": torch.ones(BATCH, NUM_LR, dtype=torch.bool)}


def cpu_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: first-call allocations and one-off kernels
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn()
        times.append(time.process_time() - started)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    repeats = 1 if getattr(args, "quick", False) else 3
    batch, result, unavailable = inputs(), {}, {}
    for key, (reason, load) in NETWORKS.items():
        unavailable[key] = reason()
        if unavailable[key] is None:
            started = time.process_time()
            batch[key] = load()
            result[f"load_{key}"] = {"cpu_s": round(time.process_time() - started, 3)}
    with torch.no_grad():
        for name, metric in METRICS.items():
            if name in NEEDS and unavailable[NEEDS[name]]:
                result[name] = {"unavailable": unavailable[NEEDS[name]]}
                continue
            seconds = cpu_seconds(lambda metric=metric: metric(batch), repeats)
            result[name] = {"cpu_s_per_image": float(f"{seconds / BATCH:.3g}"), "cpu_s_per_call": float(f"{seconds:.3g}")}
    return {"batch": BATCH, "size": SIZE, "threads": 1, "repeats": repeats, "metrics": result}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args()), indent=2))
