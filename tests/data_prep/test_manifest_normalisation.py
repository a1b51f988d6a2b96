"""manifest.json records each converter's normalisation (`normalisation.record`) and the train LR statistics.

The recorded forward map must reproduce the records: source value -> forward -> record pixel, to
within half a record step (the converter rounds; forward does not).
"""

import numpy as np
import pytest
from raw_trees import manifest, read_split, run_prepare

from satdiffmoe.data.radiometry import Normalisation

S2_B4_MEAN, S2_B4_STD = 1136.26026392, 965.23119807  # fMoW-Sentinel B4 (DiffusionSat SentinelNormalize)


def _record(out, role):
    return Normalisation.from_dict(manifest(out)["normalisation"]["record"][role])


def _pixels(record_values, value_max):
    return np.asarray(record_values, dtype=np.float64) / value_max * 2 - 1


def test_worldstrat_records_reflectance_over_10000(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0) == 0
    for role in ("hr", "lr"):
        norm = _record(out, role)
        assert (norm.kind, norm.value_max, norm.low, norm.high, norm.units) == ("scale", 10000, (0.0,), (1.0,), "reflectance")
    assert manifest(out)["normalisation"]["to_reflectance"] == "value / 10000"  # the older keys stay
    scene = next(s for s in read_split(out, "train"))
    # revisit 2: B4, B3, B2 reflectance 0.08, 0.09, 0.1 (the fixture), row 8 is outside its nodata stripe
    source = np.array([0.08, 0.09, 0.1]).reshape(3, 1, 1)
    np.testing.assert_allclose(_record(out, "lr").forward(source).ravel(),
                               _pixels(scene.lr[1, :, 8, 8], 10000), atol=1 / 10000)


@pytest.mark.parametrize("sigmas", [2, 3])
def test_fmow_records_the_per_band_mean_k_sigma_stretch(fmow_root, tmp_path, sigmas):
    out = tmp_path / "out"
    assert run_prepare("fmow", "--root", fmow_root, "--out", out, "--hr-size", 32, "--s2-sigmas", sigmas) == 0
    lr = _record(out, "lr")
    assert lr.kind == "stretch" and lr.units == "Sentinel-2 DN" and lr.extra["k"] == sigmas
    assert lr.low[0] == pytest.approx(S2_B4_MEAN - sigmas * S2_B4_STD)
    assert lr.high[0] == pytest.approx(S2_B4_MEAN + sigmas * S2_B4_STD)
    hr = _record(out, "hr")
    assert (hr.kind, hr.high, hr.units) == ("scale", (255.0,), "8-bit JPEG")
    scene = next(s for s in read_split(out, "train"))
    dn = np.array([1500.0, 1200.0, 1000.0]).reshape(3, 1, 1)  # the fixture's B4, B3, B2
    np.testing.assert_allclose(lr.forward(dn).ravel(), _pixels(scene.lr[0, :, 4, 4], 255), atol=1 / 255)


def test_fmow_fixed_dn_range_is_a_scale(fmow_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("fmow", "--root", fmow_root, "--out", out, "--hr-size", 32, "--s2-max", 3000) == 0
    assert (_record(out, "lr").kind, _record(out, "lr").high) == ("scale", (3000.0,))


def test_probav_records_14_bit_dn(probav_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("probav", "--root", probav_root, "--out", out) == 0
    assert (_record(out, "lr").high, _record(out, "lr").units) == ((16383.0,), "14-bit DN")


def test_stack_falls_back_to_value_over_value_max(stack_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("stack", "--root", stack_root, "--out", out, "--value-max", 4095) == 0
    norm = _record(out, "hr")
    assert (norm.kind, norm.value_max, norm.high) == ("scale", 4095.0, (4095.0,))


def test_the_train_records_lr_means_are_summarised(stack_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("stack", "--root", stack_root, "--out", out, "--value-max", 4095) == 0
    scenes = manifest(out)["stats"]["lr_scenes"]
    train = read_split(out, "train")
    assert scenes["split"] == "train" and scenes["count"] == len(train)
    # band 1: lr_early 4500 clips to 4095 (64 clear px), lr_late 300 (48 clear px under its mask)
    expected = (64 * 4095 + 48 * 300) / 112 / 4095
    assert scenes["mean_of_means"][0] == pytest.approx(expected, abs=1e-6)
    assert scenes["std_of_means"] == [0.0, 0.0]  # three identical scenes
