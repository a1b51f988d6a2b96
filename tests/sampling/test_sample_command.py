"""`satdiffmoe sample` on GeoTIFF/PNG stacks written by the tests, with a real tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from rasterio.transform import from_origin

from satdiffmoe.cli import main
from satdiffmoe.sampling.tiling import sample_tiled, tile_starts

TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)  # UTM, 10 m pixels


def write_stack(folder, count=3, size=10, bands=3, dtype="uint8"):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"lr{i}.tif"
        data = rng.integers(0, 255, size=(bands, size, size)).astype(dtype)
        with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=bands, dtype=dtype,
                           crs="EPSG:32633", transform=TRANSFORM) as target:
            target.write(data)
        paths.append(str(path))
    return paths


def test_geotiff_round_trip_scales_the_georeference(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, size=10)  # larger than the 4 px training LR: tiled
    out, unc = tmp_path / "sr.tif", tmp_path / "unc.tif"
    code = main(["sample", "--ckpt", str(ckpt), "--lr", *paths, "--dt", "-40", "-12", "nan", "--out", str(out),
                 "--uncertainty", str(unc), "sampler.nfe=2"])
    assert code == 0
    with rasterio.open(out) as result:
        assert (result.count, result.height, result.width) == (3, 40, 40)  # scale × input
        assert result.crs.to_epsg() == 32633
        assert result.transform.a == pytest.approx(2.5) and result.transform.e == pytest.approx(-2.5)
        assert (result.transform.c, result.transform.f) == (500000.0, 4200000.0)
        assert result.dtypes[0] == "uint8"
    with rasterio.open(unc) as result:
        assert (result.count, result.height, result.width) == (1, 40, 40)
        assert np.isfinite(result.read()).all() and result.read().min() >= 0


def test_png_inputs_write_a_png_output(tmp_path, tiny_ckpt):
    from PIL import Image

    ckpt, _ = tiny_ckpt
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"lr{i}.png"))
        Image.fromarray(np.full((4, 4, 3), 60 * i, dtype=np.uint8)).save(paths[-1])
    assert main(["sample", "--ckpt", str(ckpt), "--lr", *paths, "--dt", "3", "5", "--out",
                 str(tmp_path / "sr.png"), "sampler.nfe=1"]) == 0
    assert np.asarray(Image.open(tmp_path / "sr.png")).shape == (16, 16, 3)


@pytest.mark.parametrize("problem, message", [
    ("dt_count", "give one Δt per image"),
    ("sizes", "must share size and bands"),
    ("bands", "trained on 3"),
    ("out_folder", "not writable"),
    ("dt_value", "not a number of days"),
    ("mask_count", "one mask per image"),
])
def test_bad_input_is_one_clear_line(tmp_path, tiny_ckpt, capsys, problem, message):
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=2, size=4)
    args = {"lr": paths, "dt": ["1", "2"], "out": str(tmp_path / "sr.tif"), "mask": None}
    if problem == "dt_count":
        args["dt"] = ["1"]
    elif problem == "sizes":
        (tmp_path / "big").mkdir()
        args["lr"] = [paths[0], write_stack(tmp_path / "big", count=1, size=6)[0]]
    elif problem == "bands":
        (tmp_path / "b").mkdir()
        args["lr"] = write_stack(tmp_path / "b", count=2, size=4, bands=2)
    elif problem == "out_folder":
        args["out"] = str(tmp_path / "missing" / "sr.tif")
    elif problem == "dt_value":
        args["dt"] = ["1", "yesterday"]
    elif problem == "mask_count":
        args["mask"] = [paths[0]]
    argv = ["sample", "--ckpt", str(ckpt), "--lr", *args["lr"], "--dt", *args["dt"], "--out", args["out"]]
    if args["mask"]:
        argv += ["--mask", *args["mask"]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_tiles_cover_the_image_with_the_requested_overlap():
    assert tile_starts(4, 4, 1) == [0]
    starts = tile_starts(10, 4, 1)
    assert starts[0] == 0 and starts[-1] == 6
    assert all(b - a <= 3 for a, b in zip(starts, starts[1:]))


def test_tiled_result_matches_the_untiled_one_in_the_interior():
    # A local "model" (bicubic ×4 of the LR mean): tiling may only change pixels near tile borders.
    def model(lr_tiles, mask_tiles):
        up = F.interpolate(lr_tiles.mean(1), scale_factor=4, mode="bicubic", align_corners=False)
        return up, torch.zeros_like(up[:, :1])

    lr = torch.rand(3, 3, 20, 20, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole, _ = model(lr[None], None)
    tiled, uncertainty = sample_tiled(model, lr, torch.ones(3, 20, 20), tile=8, overlap=3, scale=4)
    assert tiled.shape == (3, 80, 80) and uncertainty.shape == (1, 80, 80)
    interior = (slice(None), slice(8, -8), slice(8, -8))
    assert (tiled[interior] - whole[0][interior]).abs().mean() < 0.02
    assert (tiled - whole[0]).abs().max() < 0.5


def test_value_max_reads_and_writes_12_bit_data_in_its_own_units(tmp_path, tiny_ckpt):
    """12-bit data stored as uint16: with --value-max 4095 the output stays in 0..4095, and pixels above
    it are clipped; without it the same file is read as 1/16 of full scale and written in 65535 units."""
    ckpt, _ = tiny_ckpt
    paths = write_stack(tmp_path, count=2, size=4, dtype="uint16")
    with rasterio.open(paths[0], "r+") as image:
        image.write((image.read().astype(np.int64) * 16).clip(0, 4200).astype("uint16"))  # a few > 4095
    common = ["sampler.nfe=1", "--lr", *paths, "--dt", "1", "2"]
    assert main(["sample", *common, "--ckpt", str(ckpt), "--value-max", "4095", "--out", str(tmp_path / "a.tif")]) == 0
    assert main(["sample", *common, "--ckpt", str(ckpt), "--out", str(tmp_path / "b.tif")]) == 0
    with rasterio.open(tmp_path / "a.tif") as twelve_bit, rasterio.open(tmp_path / "b.tif") as full_range:
        assert twelve_bit.dtypes[0] == full_range.dtypes[0] == "uint16"
        assert twelve_bit.read().max() <= 4095
        assert full_range.read().max() > 4095
