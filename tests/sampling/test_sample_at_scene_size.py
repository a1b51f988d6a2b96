"""`satdiffmoe sample` on images larger than one tile: tile count, UNet-call estimate, progress bar,
batching at the sampler's chunk size, `--max-side`, and how the uncertainty map is written."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from PIL import Image
from test_sample_command import write_stack

import satdiffmoe.training.checkpoints as checkpoints
from satdiffmoe.cli import main
from satdiffmoe.sampling.tiling import sample_tiled

# The tiny checkpoint was trained on 4 px LR tiles (HR 16, ×4); overlap max(1, 4 // 4) = 1 px, so a
# 10 px side needs ceil((10 - 1) / (4 - 1)) = 3 tiles: 3 × 3 = 9 tiles for a 10×10 image.


def sample(ckpt, paths, out, *extra):
    return main(["sample", "--ckpt", str(ckpt), "--lr", *paths, "--dt", *["1"] * len(paths),
                 "--out", str(out), *extra])


def test_independent_tiles_print_their_count_and_unet_calls_before_a_bar_over_tiles(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=3, size=10)
    assert sample(ckpt, paths, tmp_path / "sr.tif", "--tiles", "independent", "sampler.nfe=2") == 0
    err = capsys.readouterr().err
    plan = next(line for line in err.splitlines() if "UNet calls" in line)
    assert "3 LR images of 10×10 px -> 40×40 px: 9 tiles of 4 px" in plan
    assert "9 tiles × NFE 2 = 18 UNet calls" in plan and "sampled independently, then blended" in plan
    assert "tiles: 100%" in err and "9/9" in err  # the tqdm bar over tiles
    assert err.index("UNet calls") < err.index("9/9")


def test_fused_tiles_print_their_count_then_a_bar_over_steps_and_a_time_estimate(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=3, size=10)
    assert sample(ckpt, paths, tmp_path / "sr.tif", "sampler.nfe=2") == 0  # --tiles fused is the default
    err = capsys.readouterr().err
    plan = next(line for line in err.splitlines() if "UNet calls" in line)
    assert "9 tiles of 4 px" in plan and "fused inside the sampler at every step" in plan
    # the tile grid to score the output's seams with: 4 px tiles, overlap 1, ×4
    assert "satdiffmoe score --tile-grid 4 1 4`" in err
    assert "sampling:" in err and "0/2" in err  # the tqdm bar over steps (cleared when done)
    assert "about" in err and "s for all 2 steps" in err
    assert err.index("UNet calls") < err.index("0/2") < err.index("s for all 2 steps")
    with rasterio.open(tmp_path / "sr.tif") as written:
        assert written.shape == (40, 40)


def test_tiles_are_batched_at_the_sampler_chunk_size(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=3, size=10)
    # chunk_size 6 rows / 3 LR branches = 2 tiles per batch
    assert sample(ckpt, paths, tmp_path / "sr.tif", "sampler.nfe=1", "sampler.chunk_size=6") == 0
    assert "9 tiles of 4 px in batches of 2;" in capsys.readouterr().err


def test_sample_tiled_hands_the_sampler_batch_size_tiles_at_a_time():
    sizes = []

    def model(lr_tiles, mask_tiles):
        sizes.append(lr_tiles.shape[0])
        up = lr_tiles.mean(1).repeat_interleave(4, -1).repeat_interleave(4, -2)
        return up, torch.zeros_like(up[:, :1])

    sample_tiled(model, torch.zeros(3, 3, 10, 10), torch.ones(3, 10, 10), tile=4, overlap=1, scale=4, batch_size=2)
    assert sizes == [2, 2, 2, 2, 1]


def test_an_image_longer_than_max_side_is_refused_before_the_model_loads(tmp_path, tiny_ckpt, capsys, monkeypatch):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=2, size=10)

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(checkpoints, "load_task", no_load)
    assert sample(ckpt, paths, tmp_path / "sr.tif", "--max-side", "8") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "10×10 px, longer than --max-side 8" in err[0] and "9 tiles of 4 px" in err[0]
    assert "pass --max-side 10" in err[0]
    assert not (tmp_path / "sr.tif").exists()


def test_max_side_equal_to_the_image_runs(tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=2, size=10)
    assert sample(ckpt, paths, tmp_path / "sr.tif", "--max-side", "10", "sampler.nfe=1") == 0


def test_uncertainty_help_matches_how_each_format_is_written(tmp_path, tiny_ckpt, capsys):
    with pytest.raises(SystemExit):
        main(["sample", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert ".tif = raw float32 values" in help_text and ".png = 8-bit grey scaled to the map's own maximum" in help_text

    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=2, size=4)
    for name in ("unc.tif", "unc.png"):
        assert sample(ckpt, paths, tmp_path / f"sr_{name}", "--uncertainty", str(tmp_path / name), "sampler.nfe=2") == 0
    with rasterio.open(tmp_path / "unc.tif") as raw:
        values = raw.read(1)
        assert raw.dtypes[0] == "float32" and values.max() < 1  # spread in [0, 1] output units, not rescaled
    grey = np.asarray(Image.open(tmp_path / "unc.png"))
    assert grey.dtype == np.uint8 and grey.shape == (16, 16) and grey.max() == 255
    assert np.abs(grey / 255.0 - values / values.max()).max() <= 1 / 255
