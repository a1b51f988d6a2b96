"""Scene mode: overlapping tiles fused inside the sampler (sampling/scene_sampler.py)."""

from __future__ import annotations

import pytest
import torch
from sampling_toys import SCHEDULE, ConstantEstimateDenoiser, ToyDenoiser, sampler_cfg, tiny_task

from satdiffmoe.sampling.fused_sampler import BranchInputs, FusedSampler
from satdiffmoe.sampling.scene_sampler import SceneSampler, SceneTiles
from satdiffmoe.sampling.tiling import padded_size, tile_grid, tile_starts


def stack(count: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lr = (torch.rand(count, 3, size, size, generator=g) * 2 - 1)
    return lr, torch.tensor([-30.0, 5.0, 60.0][:count])


@pytest.mark.parametrize("settings", [
    {},  # the tiny model's own: DDIM, fusion every step, mean consensus, texture map
    {"scheduler": "dpm", "consensus": "optimized", "uncertainty": "pixel", "fusion_every": 2, "nfe": 4},
    {"fusion_every": 0, "uncertainty": "latent", "eta": 0.5},
])
def test_one_tile_scene_mode_is_the_fused_sampler_bit_for_bit(tiny_pretrained, settings):
    pipe = tiny_task(tiny_pretrained, "satdiffmoe").pipeline
    lr, dt = stack(3, 4)  # the tiny model's LR tile is 4 px: one tile
    mask = torch.ones(3, 4, 4)
    mask[1, :2] = 0
    plain = pipe(lr[None], dt[None], mask[None], sampler=settings, generator=torch.Generator().manual_seed(7))
    scene = pipe.sample_scene(lr, dt, mask, overlap=1, sampler=settings, generator=torch.Generator().manual_seed(7))
    for name in ("image", "uncertainty", "latent", "branch_images"):
        assert torch.equal(getattr(scene, name), getattr(plain, name)), name
    assert scene.timesteps == plain.timesteps


def test_a_larger_scene_comes_back_at_its_own_size_with_every_tile_sampled(tiny_pretrained):
    pipe = tiny_task(tiny_pretrained, "satdiffmoe").pipeline
    lr, dt = stack(2, 10)  # 4 px tiles, overlap 1: 3 × 3 tiles
    calls = []
    denoise = pipe.denoiser.forward

    def counting(*args, **kwargs):
        calls.append(args[0].shape[0])
        return denoise(*args, **kwargs)

    pipe.denoiser.forward = counting
    out = pipe.sample_scene(lr, dt, overlap=1, sampler={"nfe": 2, "chunk_size": 8},
                            generator=torch.Generator().manual_seed(0))
    assert out.image.shape == (1, 3, 40, 40) and out.uncertainty.shape == (1, 1, 40, 40)
    assert out.latent.shape == (1, 4, 20, 20)
    # 9 tiles × 2 branches = 18 rows per step, 8 rows (4 tiles) per call: 8 + 8 + 2, at each of 2 steps
    assert calls == [8, 8, 2] * 2


def constant_scene(value: float, size: int = 10, tile: int = 4, overlap: int = 1, branches: int = 2):
    """A SceneSampler without a VAE (latent = image) whose every (tile, branch) estimate is `value`."""
    boxes = tile_grid(size, size, tile, overlap)
    tiles = SceneTiles(boxes=boxes, side=tile, height=size, width=size)
    rows = len(boxes)
    tile_inputs = BranchInputs(cond=torch.full((rows, branches, 2, tile, tile), value),
                               dt=torch.zeros(rows, branches), valid=torch.ones(rows, branches, dtype=torch.bool))
    scene = BranchInputs(cond=None, dt=torch.zeros(1, branches), valid=torch.ones(1, branches, dtype=torch.bool))
    return tiles, tile_inputs, scene


def test_a_constant_estimate_denoiser_gives_an_exactly_seamless_scene():
    tiles, tile_inputs, scene = constant_scene(0.375)
    sampler = SceneSampler(ConstantEstimateDenoiser(), SCHEDULE, "epsilon", sampler_cfg(nfe=6, fusion_every=2))
    out = sampler.sample_scene(scene, tile_inputs, tiles, channels=2, generator=torch.Generator().manual_seed(0))
    assert out.image.shape == (1, 2, 10, 10)
    # every pixel, seam lines included, is the constant to float precision (no step, no band)
    assert (out.image - 0.375).abs().max() <= 1e-6


def test_fused_tiles_agree_in_their_overlaps_at_every_step_after_fusion():
    size, tile, branches = 10, 4, 2
    boxes = tile_grid(size, size, tile, 1)
    g = torch.Generator().manual_seed(3)
    field = torch.randn(branches, 2, size, size, generator=g)  # each branch's condition over the whole scene
    cond = torch.stack([field[..., y:y + tile, x:x + tile] for y, x in boxes])
    tile_inputs = BranchInputs(cond=cond, dt=torch.zeros(len(boxes), branches),
                               valid=torch.ones(len(boxes), branches, dtype=torch.bool))
    scene = BranchInputs(cond=None, dt=torch.zeros(1, branches), valid=torch.ones(1, branches, dtype=torch.bool))
    seen = []
    toy = ToyDenoiser()

    def recording(z, t, c, dt):
        seen.append(z.view(-1, branches, *z.shape[1:]).clone())
        return toy(z, t, c, dt)

    cfg = sampler_cfg(nfe=6, fusion_every=3, chunk_size=64)
    tiles = SceneTiles(boxes=boxes, side=tile, height=size, width=size)
    out = SceneSampler(recording, SCHEDULE, "epsilon", cfg).sample_scene(scene, tile_inputs, tiles, channels=2,
                                                                         generator=torch.Generator().manual_seed(0))
    assert len(seen) == 6  # one call per step: 9 tiles × 2 branches = 18 rows ≤ 64
    for step in seen[1:]:  # after the first (fusion) step, the tiles' states overlap exactly
        assert max_overlap_disagreement(step, boxes, tile, size) == 0.0
    assert out.image.shape == (1, 2, size, size)
    # the same tiles sampled independently (one scene per tile) do disagree: the check can fail
    seen.clear()
    independent = BranchInputs(cond=cond, dt=tile_inputs.dt, valid=tile_inputs.valid)
    FusedSampler(recording, SCHEDULE, "epsilon", cfg).sample(independent, (2, tile, tile),
                                                             generator=torch.Generator().manual_seed(0))
    assert max_overlap_disagreement(seen[-1], boxes, tile, size) > 1e-3


def max_overlap_disagreement(rows: torch.Tensor, boxes, tile: int, size: int) -> float:
    """Largest |a - b| between two tiles' values at one scene pixel (rows T×N×C×t×t)."""
    first = torch.full((rows.shape[1], rows.shape[2], size, size), float("nan"))
    worst = 0.0
    for (y, x), row in zip(boxes, rows):
        region = first[..., y:y + tile, x:x + tile]
        known = ~region.isnan()
        if known.any():
            worst = max(worst, float((region[known] - row[known]).abs().max()))
        region[~known] = row[~known]
    return worst


def test_aligned_tiles_start_on_the_latent_grid_and_cover_the_padded_image():
    # f = 8 at ×4: one latent px is 2 LR px, so tiles start on even LR px; 21 px pads to 8 + 14 = 22
    size = padded_size(21, 8, 2)
    starts = tile_starts(size, 8, 2, align=2)
    assert size == 22 and starts[0] == 0 and starts[-1] == size - 8
    assert all(s % 2 == 0 for s in starts) and all(b - a < 8 for a, b in zip(starts, starts[1:]))
    assert tile_starts(10, 4, 1) == tile_starts(10, 4, 1, align=1)  # align 1 is the tiling `sample` always had
