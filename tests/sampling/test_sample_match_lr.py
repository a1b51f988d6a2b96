"""`sample --match-lr`: the output keeps the LR stack's per-band statistics, and says what the model learnt on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from satdiffmoe.cli import main

TRANSFORM = from_origin(500000.0, 4200000.0, 10.0, 10.0)
LR_MEANS = (70.0, 130.0, 180.0)  # a palette the random tiny model never produces on its own


def write_lrs(folder, count=2, size=6, means=LR_MEANS, dtype="uint8", spread=12.0):
    rng = np.random.default_rng(1)
    paths = []
    for i in range(count):
        data = np.stack([rng.normal(m, spread, (size, size)) for m in means])
        data = np.clip(np.round(data), 0, 255).astype(dtype) if dtype == "uint8" else data.astype(dtype)
        path = folder / f"lr{i}.tif"
        with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=3, dtype=dtype,
                           crs="EPSG:32633", transform=TRANSFORM) as target:
            target.write(data)
        paths.append(str(path))
    return paths


def lr_band_means(paths):
    stack = []
    for path in paths:
        with rasterio.open(path) as source:
            stack.append(source.read().astype(np.float64))
    return np.stack(stack).mean((0, 2, 3))


def run_sample(ckpt, paths, out, *extra):
    return main(["sample", "--ckpt", str(ckpt), "--lr", *paths, "--dt", *["1"] * len(paths), "--out", str(out),
                 *extra, "sampler.nfe=1"])


def read(path):
    with rasterio.open(path) as source:
        return source.read().astype(np.float64)


@pytest.mark.parametrize("method", [[], ["--match-lr", "mean-std"], ["--match-lr", "histogram"]],
                         ids=["default", "mean-std", "histogram"])
def test_matched_output_has_the_lrs_per_band_mean(tmp_path, tiny_ckpt, method):
    ckpt, _ = tiny_ckpt
    paths = write_lrs(tmp_path)
    assert run_sample(ckpt, paths, tmp_path / "sr.tif", *method) == 0
    # within one 8-bit step: the output is rounded to integers when written
    np.testing.assert_allclose(read(tmp_path / "sr.tif").mean((1, 2)), lr_band_means(paths), atol=1.0)


def test_histogram_matching_stays_within_the_lrs_range(tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    paths = write_lrs(tmp_path)
    assert run_sample(ckpt, paths, tmp_path / "sr.tif", "--match-lr", "histogram") == 0
    lrs = np.stack([read(p) for p in paths])
    output = read(tmp_path / "sr.tif")
    assert (output.min((1, 2)) >= lrs.min((0, 2, 3))).all() and (output.max((1, 2)) <= lrs.max((0, 2, 3))).all()


def test_without_matching_the_model_keeps_its_own_palette(tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    paths = write_lrs(tmp_path)
    assert run_sample(ckpt, paths, tmp_path / "sr.tif", "--match-lr", "none") == 0
    assert np.abs(read(tmp_path / "sr.tif").mean((1, 2)) - lr_band_means(paths)).max() > 5  # random tiny model


def test_float_reflectance_is_written_back_as_reflectance(tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    paths = write_lrs(tmp_path, means=(0.05, 0.08, 0.12), dtype="float32", spread=0.01)
    assert run_sample(ckpt, paths, tmp_path / "sr.tif") == 0
    with rasterio.open(tmp_path / "sr.tif") as result:
        assert result.dtypes[0] == "float32"
    np.testing.assert_allclose(read(tmp_path / "sr.tif").mean((1, 2)), lr_band_means(paths), atol=1e-4)


def test_float_input_in_any_units_is_written_as_float32(tmp_path, tiny_ckpt):
    """Float LRs give float32 outputs (README): values up to 1e6 under --value-max 1e6 were written as
    uint16, wrapping around 65535."""
    ckpt, _ = tiny_ckpt
    paths = write_lrs(tmp_path, means=(3e5, 5e5, 7e5), dtype="float64", spread=2e4)
    assert run_sample(ckpt, paths, tmp_path / "sr.tif", "--value-max", "1e6") == 0
    with rasterio.open(tmp_path / "sr.tif") as result:
        assert result.dtypes[0] == "float32"
    np.testing.assert_allclose(read(tmp_path / "sr.tif").mean((1, 2)), lr_band_means(paths), rtol=1e-3)


def _ckpt_trained_on(ckpt, root, tmp_path):
    """The tiny checkpoint with its config's data.root pointing at `root`."""
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint["hyper_parameters"]["config"]["data"]["root"] = str(root)
    path = tmp_path / "moved.ckpt"
    torch.save(checkpoint, path)
    return path


def _training_manifest(root, means):
    root.mkdir()
    record = {"kind": "scale", "value_max": 255.0, "low": [0.0], "high": [255.0], "units": "8-bit"}
    (root / "manifest.json").write_text(json.dumps({
        "source": "synthetic", "bands": ["R", "G", "B"], "counts": {"train": 40},
        "normalisation": {"record": {"hr": record, "lr": record}},
        "stats": {"lr_scenes": {"count": 40, "mean_of_means": means, "std_of_means": [0.03] * 3}}}))


def test_it_says_what_the_model_was_trained_on_and_warns_when_the_input_is_far(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    _training_manifest(tmp_path / "data", [0.27, 0.51, 0.2])  # B: 0.2 ± 0.03 vs the input's 180 / 255 = 0.71
    moved = _ckpt_trained_on(ckpt, tmp_path / "data", tmp_path)
    paths = write_lrs(tmp_path)
    assert run_sample(moved, paths, tmp_path / "sr.tif") == 0
    err = capsys.readouterr().err
    assert "trained on: synthetic (manifest " in err and "40 train records): LR 8-bit 0..255 -> [-1, 1]" in err
    warning = next(line for line in err.splitlines() if line.startswith("warning: the input is far"))
    assert "B mean 0.70" in warning and "R mean" not in warning and "G mean" not in warning


def test_no_warning_for_an_input_like_the_training_data(tmp_path, tiny_ckpt, capsys):
    ckpt, _ = tiny_ckpt
    _training_manifest(tmp_path / "data", [m / 255 for m in LR_MEANS])
    paths = write_lrs(tmp_path)
    assert run_sample(_ckpt_trained_on(ckpt, tmp_path / "data", tmp_path), paths, tmp_path / "sr.tif") == 0
    assert "warning: the input is far" not in capsys.readouterr().err
