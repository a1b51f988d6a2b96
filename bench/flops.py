"""The two halves of model FLOP utilisation (MFU): FLOPs a step does, and the peak the device could do.

`count_flops(fn)` runs `fn` once under `torch.utils.flop_counter.FlopCounterMode`. Attention runs on
PyTorch's math backend while counting: the CPU's fused SDPA kernel has no FLOP formula (it would
count as zero), and the math path's matmuls give the same count as the CUDA kernels' formulas, so a
model's count does not depend on the device it was counted on.

`peak_tflops(device)` is the dense bf16 tensor-core peak from the datasheet for known GPUs (sparsity
excluded). `BENCH_PEAK_TFLOPS` overrides it; any other device (a CPU, an unlisted GPU) gets a
measured large-matmul rate instead, and `source` says which one the MFU is against.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 TFLOP/s (NVIDIA datasheets). More specific names first: "H100 PCIe" before "H100".
DENSE_BF16_TFLOPS = (
    ("H200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("A100", 312.0),
    ("L40S", 362.0),
)


def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of one call of `fn` (forward and, if `fn` calls it, backward)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def measured_matmul_tflops(device: torch.device, size: int, repeats: int = 5) -> float:
    """Achieved TFLOP/s of a square matmul: bf16 on GPUs, fp32 on CPUs (their fast path)."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up: kernel selection, allocator
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.matmul(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e12


def peak_tflops(device: torch.device) -> dict[str, Any]:
    """{"tflops": peak, "source": where the number comes from}."""
    override = os.environ.get("BENCH_PEAK_TFLOPS")
    if override:
        return {"tflops": float(override), "source": "BENCH_PEAK_TFLOPS"}
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, tflops in DENSE_BF16_TFLOPS:
            if key in name:
                return {"tflops": tflops, "source": f"datasheet dense bf16 ({key})"}
        return {"tflops": measured_matmul_tflops(device, 8192), "source": f"measured bf16 matmul ({name})"}
    return {"tflops": measured_matmul_tflops(device, 1024), "source": "measured fp32 matmul (CPU)"}
