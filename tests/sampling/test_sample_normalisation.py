"""`sample` maps pixels through the training manifest's normalisation: the LR's `forward` on the input's raw
values, the HR's `inverse` on the output; `--value-max`, `--normalisation value-max` or no manifest keep the
old fractions-of-value_max path."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from satdiffmoe.cli import main
from satdiffmoe.commands.sample import read_stack
from satdiffmoe.data.radiometry import Normalisation, record_normalisation

TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)
# Sentinel-2 DN stretched per band over mean ± 2σ: [600, 1800], [1000, 2000], [100, 1700]
STRETCH = Normalisation.stretch([1200.0, 1500.0, 900.0], [300.0, 250.0, 400.0], 2.0, 255, "Sentinel-2 DN")
EIGHT_BIT = Normalisation.scale(255, 255.0, "8-bit JPEG")
REFLECTANCE = Normalisation.scale(10000, 1.0, "reflectance")
FLOAT_HR = Normalisation("stretch", 255, (-0.1, 0.05, 10.0), (0.9, 0.3, 20.5), "HR units")
DN_14_BIT = Normalisation.scale(16383, units="14-bit DN")


def write_tifs(folder, arrays, name="lr"):
    paths = []
    for i, data in enumerate(arrays):
        path = folder / f"{name}{i}.tif"
        with rasterio.open(path, "w", driver="GTiff", height=data.shape[1], width=data.shape[2],
                           count=data.shape[0], dtype=data.dtype.name, crs="EPSG:32633", transform=TRANSFORM) as out:
            out.write(data)
        paths.append(str(path))
    return paths


def dn_stack(spread=0.6, count=2, size=6):
    """uint16 DN around the stretch's means, `spread` of its σ."""
    rng = np.random.default_rng(3)
    return [np.stack([rng.normal(m, spread * s, (size, size)) for m, s in zip(STRETCH.extra["mean"],
                                                                            STRETCH.extra["std"])])
            .round().clip(0, 65535).astype("uint16") for _ in range(count)]


def reflectance_stack(count=2, size=6):
    rng = np.random.default_rng(4)
    return [rng.uniform(0.05, 0.6, (3, size, size)).astype("float32") for _ in range(count)]


def read(path):
    with rasterio.open(path) as source:
        return source.read()


def trained_on(tiny_ckpt, folder, lr=None, hr=None, manifest=True):
    """The tiny checkpoint with data.root = folder/data, whose manifest.json records (lr, hr) if given."""
    ckpt, _ = tiny_ckpt
    root = folder / "data"
    root.mkdir()
    if manifest:
        content = {"source": "test", "counts": {"train": 1}}
        if lr is not None:
            content["normalisation"] = {"record": record_normalisation(hr, lr)}
        (root / "manifest.json").write_text(json.dumps(content))
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["config"]["data"]["root"] = str(root)
    torch.save(checkpoint, folder / "model.ckpt")
    return folder / "model.ckpt"


def sample(ckpt, paths, out, *extra):
    return main(["sample", "--ckpt", str(ckpt), "--lr", *paths, "--dt", *["1"] * len(paths), "--out", str(out),
                 *extra, "sampler.nfe=1"])


# ------------------------------------------------------------------------------ input

def test_the_input_is_the_lr_forward_of_the_raw_values(tmp_path):
    paths = write_tifs(tmp_path, dn_stack())
    rasters, _ = read_stack(paths, None, [1.0, 1.0], None, STRETCH)
    for path, raster in zip(paths, rasters):
        expected = np.clip(STRETCH.forward(read(path)), -1, 1).astype(np.float32)  # e.g. DN 1200 -> 0, 1800 -> 1
        np.testing.assert_array_equal(raster.pixels, expected)


def test_input_values_outside_the_lr_interval_are_clipped_and_counted(tmp_path, caplog):
    stack = dn_stack(count=1)
    stack[0][0, 0, :2] = [1801, 5000]  # band 1's interval is 600..1800
    paths = write_tifs(tmp_path, stack)
    with caplog.at_level(logging.WARNING):
        rasters, _ = read_stack(paths, None, [1.0], None, STRETCH)
    assert rasters[0].pixels.max() == 1.0
    assert "2 of 108 values (1.9 %) lie outside the training LR interval" in caplog.text


def test_a_manifest_run_equals_a_run_on_the_hand_normalised_input(tmp_path, tiny_ckpt, capsys):
    """DN through the manifest's stretch == the same pixels written by hand as [0, 1] floats and read with
    --value-max 1 (HR reflectance 0..1: both outputs are (x + 1) / 2 of the model's x)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    stack = dn_stack()
    dn = write_tifs(tmp_path, stack)
    by_hand = write_tifs(tmp_path, [((np.clip(STRETCH.forward(s), -1, 1) + 1) / 2).astype("float32") for s in stack],
                         name="hand")
    manifest_ckpt = trained_on(tiny_ckpt, tmp_path / "a", STRETCH, REFLECTANCE)
    plain_ckpt = trained_on(tiny_ckpt, tmp_path / "b", manifest=False)
    assert sample(manifest_ckpt, dn, tmp_path / "manifest.tif", "--match-lr", "none") == 0
    assert ("input: manifest LR normalisation (Sentinel-2 DN per band [600..1800, 1000..2000, 100..1700] "
            "(mean ± 2σ) -> [-1, 1]); output: manifest HR normalisation ([-1, 1] -> reflectance 0..1, written as "
            "float32)") in capsys.readouterr().err
    assert sample(plain_ckpt, by_hand, tmp_path / "hand.tif", "--match-lr", "none", "--value-max", "1") == 0
    np.testing.assert_allclose(read(tmp_path / "manifest.tif"), read(tmp_path / "hand.tif"), atol=1e-5)


# ------------------------------------------------------------------------------ output

@pytest.mark.parametrize("hr, dtype", [(FLOAT_HR, "float32"), (EIGHT_BIT, "uint8"), (DN_14_BIT, "uint16")],
                         ids=["float-interval", "8-bit", "14-bit"])
def test_the_output_is_the_hr_inverse_of_the_models_output(tmp_path, tiny_ckpt, hr, dtype):
    """LR reflectance 0..1 gives the model the same pixels as --value-max 1, whose float32 output is
    (x + 1) / 2 of the model's x; the manifest run must write hr.inverse(x) = low + (x + 1) / 2 · (high − low)."""
    paths = write_tifs(tmp_path, reflectance_stack())
    ckpt = trained_on(tiny_ckpt, tmp_path, REFLECTANCE, hr)
    assert sample(ckpt, paths, tmp_path / "hr.tif", "--match-lr", "none") == 0
    assert sample(ckpt, paths, tmp_path / "model.tif", "--match-lr", "none", "--value-max", "1") == 0
    model = read(tmp_path / "model.tif").astype(np.float64) * 2 - 1
    written = read(tmp_path / "hr.tif")
    assert written.dtype == dtype
    expected = hr.inverse(model)
    if dtype == "float32":
        np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-5)
    else:  # rounded to integers: within one step (a value at .5 may round either way from float32 noise)
        assert np.abs(written - expected).max() <= 0.5 + 1e-3
        assert (written == np.round(expected)).mean() > 0.99


def test_colours_are_matched_in_minus_one_one_before_the_inverse(tmp_path, tiny_ckpt):
    """mean-std in the model's units: the output's band means are the HR inverse of the LRs' normalised means."""
    stack = dn_stack(spread=0.3)
    paths = write_tifs(tmp_path, stack)
    ckpt = trained_on(tiny_ckpt, tmp_path, STRETCH, EIGHT_BIT)
    assert sample(ckpt, paths, tmp_path / "sr.tif", "--match-lr", "mean-std") == 0
    lr_means = np.stack([STRETCH.forward(s) for s in stack]).mean((0, 2, 3))  # in [-1, 1]
    np.testing.assert_allclose(read(tmp_path / "sr.tif").mean((1, 2)), 255 * (lr_means + 1) / 2, atol=1.0)


# ------------------------------------------------------------------------------ the old path

@pytest.mark.parametrize("extra, why", [(["--value-max", "65535"], "(given, so the manifest normalisation is not used)"),
                                        (["--normalisation", "value-max"], "(--normalisation value-max, so")],
                         ids=["value-max", "normalisation-value-max"])
def test_value_max_keeps_the_old_path_bit_for_bit(tmp_path, tiny_ckpt, capsys, extra, why):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = write_tifs(tmp_path, dn_stack())
    with_manifest = trained_on(tiny_ckpt, tmp_path / "a", STRETCH, EIGHT_BIT)
    without = trained_on(tiny_ckpt, tmp_path / "b", manifest=False)
    assert sample(with_manifest, paths, tmp_path / "new.tif", *extra) == 0
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("input/output:"))
    assert line.startswith("input/output: --value-max 65535") and why in line
    assert sample(without, paths, tmp_path / "old.tif", *extra) == 0
    new, old = read(tmp_path / "new.tif"), read(tmp_path / "old.tif")
    assert new.dtype == old.dtype == np.uint16 and np.array_equal(new, old)


@pytest.mark.parametrize("manifest", [False, True], ids=["no-manifest", "manifest-without-record"])
def test_without_a_manifest_normalisation_the_dtype_maximum_is_used(tmp_path, tiny_ckpt, capsys, manifest):
    paths = write_tifs(tmp_path, dn_stack())
    ckpt = trained_on(tiny_ckpt, tmp_path, manifest=manifest)
    assert sample(ckpt, paths, tmp_path / "default.tif") == 0
    assert ("input/output: --value-max 65535, the dtype's maximum (no manifest normalisation)"
            in capsys.readouterr().err)
    assert sample(ckpt, paths, tmp_path / "explicit.tif", "--value-max", "65535") == 0
    assert np.array_equal(read(tmp_path / "default.tif"), read(tmp_path / "explicit.tif"))


# ------------------------------------------------------------------------------ refused before sampling

@pytest.mark.parametrize("lr, hr, extra, out, message", [
    (STRETCH, EIGHT_BIT, ["--normalisation", "manifest", "--value-max", "4095"], "sr.tif", "give one of them"),
    (None, None, ["--normalisation", "manifest"], "sr.tif", "has no manifest.json with normalisation.record"),
    (STRETCH, REFLECTANCE, [], "sr.png", "float values a PNG cannot hold; write a .tif"),
    (Normalisation.stretch([1200.0, 1500.0], [300.0, 250.0], 2.0, 255, "DN"), EIGHT_BIT, [], "sr.tif",
     "lr0.tif has 3 bands but the training manifest's LR normalisation has 2"),
], ids=["both", "manifest-missing", "float-png", "band-count"])
def test_contradictions_are_one_line(tmp_path, tiny_ckpt, capsys, lr, hr, extra, out, message):
    paths = write_tifs(tmp_path, dn_stack())
    ckpt = trained_on(tiny_ckpt, tmp_path, lr, hr)
    assert sample(ckpt, paths, tmp_path / out, *extra) == 2
    assert message in capsys.readouterr().err
