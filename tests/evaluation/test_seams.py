"""The seam ratio (evaluation/seams.py): 1 on a seamless image, above 1 on a hard seam, below 1 on a
band of blur; `score --tile-grid` adds it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from satdiffmoe.cli import main
from satdiffmoe.evaluation.seams import TileGrid, grid_seam_ratio, seam_ratio
from satdiffmoe.sampling.tiling import blend_window

# 32 LR px in 16 px tiles overlapping by 4, ×4: tiles start at 0, 8, 16 LR px, i.e. 0, 32, 64 HR px,
# each 64 HR px wide; they hand over in the middle of each overlap, at (0 + 64 + 32) / 2 = 48 and 80
GRID = TileGrid(tile=16, overlap=4, scale=4)


def noise(size: int = 128, seed: int = 0) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_the_handover_lines_are_the_middles_of_the_overlaps():
    assert GRID.lines(128) == [48, 80]
    assert TileGrid(tile=4, overlap=0, scale=4).lines(32) == [16]  # abutting tiles: their shared edge


def test_a_seamless_image_scores_about_one():
    assert grid_seam_ratio(noise(), GRID) == pytest.approx(1.0, abs=0.1)


def patchwork(image: torch.Tensor, lines: list[int], step: float) -> torch.Tensor:
    """`image` with a brightness step of `step` across each of `lines`, in rows and columns alike:
    tiles that disagree on their level, meeting at the lines."""
    out = image.clone()
    for i, p in enumerate(lines):
        sign = step if i % 2 == 0 else -step
        out[:, :, p:] += sign
        out[:, p:, :] += sign
    return out


def test_an_artificial_seam_scores_above_one():
    # white noise in [-1, 1] has E[(a - b)²] = 2/3 across any line; a step of 1 adds 1: 5/3 ÷ 2/3 = 2.5
    assert grid_seam_ratio(patchwork(noise(), [48, 80], 1.0), GRID) == pytest.approx(2.5, abs=0.3)
    # the same steps two pixels off the lines are interior texture, and the ratio stays near 1
    assert grid_seam_ratio(patchwork(noise(), [50, 82], 1.0), GRID) == pytest.approx(1.0, abs=0.15)


def test_two_disagreeing_tiles_blended_score_below_one():
    # two independent 64 px tiles of noise overlapping by 32 px, blended with the raised-cosine window
    # (its profile across the columns): their overlap averages to a band of blur around line 48
    left, right = noise(seed=1)[..., :64], noise(seed=2)[..., :64]
    ramp = blend_window(64)[32]  # the window's profile along one row
    out, weight = torch.zeros(3, 128, 96), torch.zeros(96)
    out[..., :64] += ramp * left
    out[..., 32:] += ramp * right
    weight[:64] += ramp
    weight[32:] += ramp
    assert seam_ratio(out / weight, rows=[], columns=[48]) < 0.8


def test_no_lines_or_flat_interior_is_undefined():
    assert np.isnan(seam_ratio(noise(), rows=[], columns=[]))
    assert np.isnan(seam_ratio(torch.zeros(1, 16, 16), rows=[8], columns=[]))


def test_score_adds_the_seam_ratio_of_the_output_and_its_reference(tmp_path, capsys):
    def to_png(image: torch.Tensor) -> np.ndarray:
        return ((image.clamp(-1, 1).numpy().transpose(1, 2, 0) + 1) * 127.5).round().astype(np.uint8)

    hr = to_png(noise() / 2)
    seam = to_png(patchwork(noise() / 2, [48, 80], 0.5))
    Image.fromarray(hr).save(tmp_path / "hr.png")
    Image.fromarray(seam).save(tmp_path / "sr.png")
    out = tmp_path / "m.json"
    assert main(["score", "--pred", str(tmp_path / "sr.png"), "--ref", str(tmp_path / "hr.png"), "--metrics", "psnr",
                 "--tile-grid", "16", "4", "4", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["seam"]["mean"] > 1.5
    assert metrics["seam_ref"]["mean"] == pytest.approx(1.0, abs=0.1)
    assert "seam ratio" in capsys.readouterr().out


@pytest.mark.parametrize("values", [["16", "4"], ["16", "16", "4"], ["16", "4", "0"]])
def test_a_bad_tile_grid_is_one_line(tmp_path, capsys, values):
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "sr.png")
    assert main(["score", "--pred", str(tmp_path / "sr.png"), "--ref", str(tmp_path / "sr.png"), "--metrics", "psnr",
                 "--tile-grid", *values]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--tile-grid" in err[0]
