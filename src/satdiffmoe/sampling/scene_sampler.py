"""Scene mode of the fused sampler: overlapping tiles fused inside the reverse process (MultiDiffusion).

A scene larger than the training size is cut into overlapping tiles (sampling/tiling.py). Sampling
each tile on its own and blending the HR tiles hides the seam lines but cannot make two tiles agree:
each draws its own detail, and their overlap averages two hallucinations. Tiles are the branch
fusion problem in space (MultiDiffusion, Bar-Tal et al. 2023, eq. 5): the least-squares agreement
of all tiles' estimates is, per latent pixel, their window-weighted mean. So here

    the scene latent z is held once per branch (1×N×C×H×W, the scene as one batch row)
    every step  (tile, branch) rows are cropped from z, denoised in chunks of `sampler.chunk_size`
                rows, and each latent pixel's estimate is the window-weighted mean over the tiles
                covering it (`normalised_windows`), which is the model output FusedSampler sees
    fusion step branch fusion on those scene-wide branch estimates, as for one tile (consensus.py)

Averaging the tiles' eps is averaging their x0: x0 = (z - sigma eps)/alpha is affine in eps for the
one shared z. Tiles are fused at every step, not only at fusion steps, because each step's update
writes into the one scene latent: between fusion steps a tile has no state of its own to drift in,
so every tile continues from the fused estimate, and two tiles hold the same value wherever they
overlap at every step. Branch fusion comes after tile fusion here; for the linear rules (mean,
time_weighted, mask_weighted) the order does not matter, `optimized` fits the whole scene's LRs.

Decoding (the output, the branch images, `optimized`'s data term, the `pixel` map) runs the VAE on
the tiles of the latent and blends the decoded tiles with the same normalised windows at image
resolution: memory stays one tile per call (the VAE's attention would not fit a scene), and tiles
decoded from one agreeing latent differ only where the decoder sees past a tile edge.

With one tile every weight is exactly 1.0, so scene mode is FusedSampler bit for bit
(tests/sampling/test_scene_sampler.py).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .consensus import FusionContext
from .fused_sampler import BranchInputs, FusedSampler, SamplerOutput, _take_rows
from .noise import GeneratorLike
from .tiling import normalised_windows


@dataclass
class SceneTiles:
    """The scene's latent tiles: top-left (y, x) in latent px, the tile side, the scene latent's size,
    and the image px per latent px (the VAE's downsampling; 1 without one)."""

    boxes: list[tuple[int, int]]
    side: int
    height: int
    width: int
    factor: int = 1

    def __post_init__(self):
        self.windows = normalised_windows(self.boxes, self.side, self.height, self.width)
        f = self.factor
        self.image_windows = normalised_windows([(y * f, x * f) for y, x in self.boxes], self.side * f,
                                                self.height * f, self.width * f)


def take_tiles(inputs: BranchInputs, tiles: slice) -> BranchInputs:
    """The per-tile rows (dim 0) `tiles` of a tile-batched BranchInputs."""
    def rows(value):
        return None if value is None else value[tiles]

    return BranchInputs(cond=_take_rows(inputs.cond, tiles), dt=inputs.dt[tiles], valid=inputs.valid[tiles],
                        lr=rows(inputs.lr), lr_mask=rows(inputs.lr_mask), lr_valid=rows(inputs.lr_valid))


class SceneSampler(FusedSampler):
    """FusedSampler over one scene of overlapping tiles (module docstring). `report` gets one line
    after the first step: its time and the estimate for the whole run."""

    def __init__(self, *args, report: Callable[[str], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.report = report
        self._tiles: SceneTiles | None = None
        self._tile_inputs: BranchInputs | None = None
        self._first_step: float | None = None

    # ------------------------------------------------------------------------------------ denoiser
    def model_output(self, z: torch.Tensor, t: torch.Tensor, inputs: BranchInputs) -> torch.Tensor:
        """The scene rows z (1×N×C×H×W) -> the window-weighted mean of every tile's output."""
        if self._tiles is None:
            return super().model_output(z, t, inputs)
        started = time.perf_counter()
        tiles, side = self._tiles, self._tiles.side
        branches = z.shape[1]
        out = torch.zeros_like(z)
        per_call = max(1, self.chunk_size // branches)  # tiles whose rows fill one denoiser call
        for first in range(0, len(tiles.boxes), per_call):
            group = slice(first, first + per_call)
            boxes = tiles.boxes[group]
            rows = torch.stack([z[0, :, :, y:y + side, x:x + side] for y, x in boxes])
            outputs = super().model_output(rows, t, take_tiles(self._tile_inputs, group))
            for (y, x), weight, output in zip(boxes, tiles.windows[group], outputs):
                out[0, :, :, y:y + side, x:x + side] += weight.to(output) * output
        if self._first_step is None:
            self._first_step = time.perf_counter() - started
            if self.report is not None:
                steps = self.cfg.nfe
                self.report(f"first step: {self._first_step:.1f} s; about {self._first_step * steps:.0f} s for "
                            f"all {steps} steps")
        return out

    # ------------------------------------------------------------------------------------- decoder
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scene latent rows (R×C×H×W) -> images, decoded tile by tile and blended (module docstring)."""
        if self._tiles is None or self.vae is None:
            return super().decode(latent)  # without a VAE latent space is image space: nothing to blend
        tiles, side, f = self._tiles, self._tiles.side, self._tiles.factor
        rows = latent.shape[0]
        per_call = max(1, self.chunk_size // rows)
        out = None
        for first in range(0, len(tiles.boxes), per_call):
            group = slice(first, first + per_call)
            boxes = tiles.boxes[group]
            crops = torch.cat([latent[..., y:y + side, x:x + side] for y, x in boxes])
            images = super().decode(crops).split(rows)
            if out is None:
                out = images[0].new_zeros(rows, images[0].shape[1], tiles.height * f, tiles.width * f)
            for (y, x), weight, image in zip(boxes, tiles.image_windows[group], images):
                box = (..., slice(y * f, (y + side) * f), slice(x * f, (x + side) * f))
                out[box] = out[box] + weight.to(image) * image
        return out

    def fusion_context(self, inputs: BranchInputs) -> FusionContext:
        context = super().fusion_context(inputs)
        if self.vae is None:
            return context
        return dataclasses.replace(context, decode=self.decode)  # tile by tile, as the output is

    # ------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_scene(self, scene: BranchInputs, tile_inputs: BranchInputs, tiles: SceneTiles,
                     channels: int, generator: GeneratorLike = None) -> SamplerOutput:
        """Sample one scene. `scene`: its BranchInputs as one batch row (cond unused; dt, valid and the
        scene's LRs for the consensus and the map); `tile_inputs`: one batch row per tile (their
        conditions); `tiles`: where they sit; `channels`: the latent's."""
        self._tiles, self._tile_inputs, self._first_step = tiles, tile_inputs, None
        try:
            return self.sample(scene, (channels, tiles.height, tiles.width), generator)
        finally:
            self._tiles = self._tile_inputs = None
