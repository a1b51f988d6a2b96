"""Super-resolving LR images larger than the training size: the tile geometry, and independent tiles blended.

The model was trained on LR tiles of a fixed size. A larger image is cut into tiles of that size
with `overlap` LR pixels shared between neighbours. Two ways to sample them:

* `sample_tiled` (`satdiffmoe sample --tiles independent`): every tile is sampled on its own and the
  HR tiles are weighted by a raised-cosine window (1 in the middle, falling towards the tile edges),
  so hard seam lines fade out; neighbouring tiles still draw different detail in their overlap.
* sampling/scene_sampler.py (`--tiles fused`, the default): the tiles are fused inside the sampler.

Images smaller than a tile are reflect-padded and cropped back. `handover_lines` names where one tile
hands over to the next, which the seam ratio (evaluation/seams.py) measures.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

TileSampler = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
# (lr tiles T×N×C×t×t, masks T×N×t×t) -> (hr tiles T×C×S×S, uncertainty T×1×S×S), S = scale·t


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets covering [0, size) with tiles of `tile` px overlapping by about `overlap` (at
    least, for align 1), each a multiple of `align` px; (size - tile) must be one (`padded_size`)."""
    if size <= tile:
        return [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    return [align * round(i * (size - tile) / (count - 1) / align) for i in range(count)]


def padded_size(size: int, tile: int, align: int = 1) -> int:
    """The side an image is padded to before tiling: one tile at least, and tile + a multiple of
    `align` (tile starts on the latent grid: scene mode with a VAE that downsamples more than ×scale)."""
    return tile + math.ceil(max(0, size - tile) / align) * align


def tile_grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[tuple[int, int]]:
    """Top-left (y, x) of every tile over an h×w LR image (padded up to `padded_size` first)."""
    full_h, full_w = padded_size(height, tile, align), padded_size(width, tile, align)
    return [(y, x) for y in tile_starts(full_h, tile, overlap, align)
            for x in tile_starts(full_w, tile, overlap, align)]


def handover_lines(starts: list[int], tile: int) -> list[int]:
    """Where each tile hands over to the next along one axis: the middle of their overlap (where the
    two windows weigh equally; the shared edge when tiles abut). Line p lies between pixels p-1 and p."""
    return [(first + tile + second) // 2 for first, second in zip(starts, starts[1:])]


def normalised_windows(boxes: list[tuple[int, int]], tile: int, height: int, width: int,
                       device=None) -> list[torch.Tensor]:
    """Per-tile blending weights w_t / Σ_t' w_t' over the tiles covering each pixel (raised-cosine
    w): they sum to 1 at every pixel, and a lone tile's are exactly 1.0, so blending one tile returns
    it bit for bit."""
    window = blend_window(tile, device)
    total = torch.zeros(height, width, device=device)
    for y, x in boxes:
        total[y:y + tile, x:x + tile] += window
    return [window / total[y:y + tile, x:x + tile] for y, x in boxes]


def blend_window(size: int, device=None) -> torch.Tensor:
    """size×size raised-cosine weights, never exactly 0 (edge pixels of the image have one tile)."""
    ramp = torch.sin(math.pi * (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size)
    return (ramp[:, None] * ramp[None, :]).clamp_min(1e-3)


def sample_tiled(sample: TileSampler, lr: torch.Tensor, mask: torch.Tensor, tile: int, overlap: int,
                 scale: int, batch_size: int = 8, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """lr N×C×h×w (+ mask N×h×w) of any size -> HR C×(scale·h)×(scale·w) and uncertainty 1×H×W.

    `batch_size` tiles go to `sample` at once; `progress` shows a bar over tiles.
    """
    height, width = lr.shape[-2:]
    pad_h, pad_w = max(0, tile - height), max(0, tile - width)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        lr = F.pad(lr, (0, pad_w, 0, pad_h), mode=mode)
        mask = F.pad(mask[:, None], (0, pad_w, 0, pad_h), mode="replicate")[:, 0]
    full_h, full_w = lr.shape[-2:]
    boxes = tile_grid(height, width, tile, overlap)
    out = torch.zeros(lr.shape[1], full_h * scale, full_w * scale, device=lr.device)
    spread = torch.zeros(1, full_h * scale, full_w * scale, device=lr.device)
    weight = torch.zeros(1, full_h * scale, full_w * scale, device=lr.device)
    window = blend_window(tile * scale, lr.device)
    bar = tqdm(total=len(boxes), desc="tiles", unit="tile", disable=not progress)
    for first in range(0, len(boxes), batch_size):
        group = boxes[first:first + batch_size]
        lr_tiles = torch.stack([lr[..., y:y + tile, x:x + tile] for y, x in group])
        mask_tiles = torch.stack([mask[..., y:y + tile, x:x + tile] for y, x in group])
        images, uncertainty = sample(lr_tiles, mask_tiles)
        for (y, x), image, unc in zip(group, images, uncertainty):
            box = (slice(None), slice(y * scale, (y + tile) * scale), slice(x * scale, (x + tile) * scale))
            out[box] += window * image
            spread[box] += window * unc
            weight[box] += window
        bar.update(len(group))
    bar.close()
    crop = (slice(None), slice(0, height * scale), slice(0, width * scale))
    return (out / weight)[crop], (spread / weight)[crop]
