"""`sampler.precision=bf16` runs the denoiser under bf16 autocast and stays close to the fp32 sampler."""

import pytest
import torch

from satdiffmoe.config import with_overrides
from satdiffmoe.training import task_class

# Tolerance on images in [-1, 1], 10 DDIM steps, fusion every 5, 3 branches. Measured on CPU with the
# tiny random networks: mean |diff| 2.7e-4, max 2.2e-3; the bounds leave ~20x headroom for CUDA kernels.
MEAN_ABS_TOLERANCE = 0.01
MAX_ABS_TOLERANCE = 0.05


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_bf16_sampling_matches_fp32_within_tolerance(device, tiny_cfg, make_batch):
    cfg = tiny_cfg("stage=satdiffmoe")
    task = task_class("satdiffmoe")(cfg).to(device).eval()
    batch = make_batch(cfg, scenes=2, branches=3, device=device)
    images = {}
    for precision in ("32", "bf16"):
        sampler = with_overrides(cfg, {"sampler.precision": precision, "sampler.nfe": 10,
                                       "sampler.fusion_every": 5}).sampler
        images[precision] = task.sample(batch, sampler, torch.Generator(device).manual_seed(0)).image
    difference = (images["bf16"] - images["32"]).abs()
    assert images["bf16"].dtype == torch.float32  # the sampler state and outputs stay fp32
    assert difference.max() > 0  # the switch reached the denoiser
    assert difference.mean() < MEAN_ABS_TOLERANCE
    assert difference.max() < MAX_ABS_TOLERANCE
