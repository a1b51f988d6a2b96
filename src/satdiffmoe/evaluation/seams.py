"""The seam ratio of a tiled output: gradient energy across the tile handover lines ÷ across every
other line (docs/metrics.md, "Seam ratio"). 1.0 = the handover lines look like any other line.

A hard seam (two tiles meeting with different values) puts a step on its line: the ratio rises above
1. A band of blur (two tiles that disagree, averaged in their overlap) lowers it below 1. It needs
the tile geometry (`TileGrid`, what `satdiffmoe sample` prints as `--tile-grid`), and no reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UserError
from ..sampling.tiling import handover_lines, padded_size, tile_starts

# not in the metric catalog: `evaluate` scores one-tile scenes, which have no seams; `score --tile-grid` adds them
SEAM_LABELS = {"seam": "seam ratio", "seam_ref": "seam ratio of the HR"}


@dataclass(frozen=True)
class TileGrid:
    """The tiling `sample` used: LR tile side and overlap, HR px per LR px, LR px between tile starts."""

    tile: int
    overlap: int
    scale: int
    align: int = 1

    @classmethod
    def parse(cls, values: list[int]) -> TileGrid:
        if len(values) not in (3, 4) or any(v < 0 for v in values):
            raise UserError(f"--tile-grid takes TILE OVERLAP SCALE [ALIGN] (as `satdiffmoe sample` prints them), got "
                            f"{' '.join(map(str, values))}")
        grid = cls(*values)
        if grid.tile < 2 or grid.scale < 1 or grid.align < 1 or not grid.overlap < grid.tile:
            raise UserError(f"--tile-grid {' '.join(map(str, values))}: need TILE ≥ 2, 0 ≤ OVERLAP < TILE, SCALE ≥ 1, "
                            "ALIGN ≥ 1")
        return grid

    def lines(self, size: int) -> list[int]:
        """The handover lines (HR px) along an axis of `size` HR px; line p lies between pixels p-1 and p."""
        if size % self.scale:
            raise UserError(f"an output side of {size} px is not a multiple of --tile-grid SCALE {self.scale}")
        lr = size // self.scale
        starts = tile_starts(padded_size(lr, self.tile, self.align), self.tile, self.overlap, self.align)
        lines = handover_lines([s * self.scale for s in starts], self.tile * self.scale)
        return [p for p in lines if 0 < p < size]


def gap_energy(image: torch.Tensor, dim: int) -> torch.Tensor:
    """Mean squared difference across each gap between neighbouring lines along `dim` of C×H×W
    (-1: between columns, -2: between rows): W-1 (or H-1) values, gap j between lines j and j+1."""
    diff = image.float().diff(dim=dim) ** 2
    other = -2 if dim == -1 else -1
    return diff.mean(dim=(0, other))


def seam_ratio(image: torch.Tensor, rows: list[int], columns: list[int]) -> float:
    """Gradient energy across the handover lines ÷ across all other lines, pooled over both axes.

    `image` C×H×W; `rows`/`columns`: handover lines (line p between pixels p-1 and p). NaN without a
    line, or where every other line is flat."""
    boundary, interior = [], []
    for dim, lines in ((-2, rows), (-1, columns)):
        energy = gap_energy(image, dim)
        on = torch.zeros_like(energy, dtype=torch.bool)
        on[[p - 1 for p in lines]] = True
        boundary.append(energy[on])
        interior.append(energy[~on])
    seams, rest = torch.cat(boundary), torch.cat(interior)
    if seams.numel() == 0 or rest.numel() == 0 or float(rest.mean()) == 0:
        return math.nan
    return float(seams.mean() / rest.mean())


def grid_seam_ratio(image: torch.Tensor, grid: TileGrid) -> float:
    """`seam_ratio` of a C×H×W output at the handover lines of `grid`."""
    return seam_ratio(image, grid.lines(image.shape[-2]), grid.lines(image.shape[-1]))
