"""data/radiometry.py: normalisations round-trip, output matching is exact, and far-from-training is a stated rule."""

import numpy as np
import pytest
from omegaconf import OmegaConf

from satdiffmoe.data.radiometry import (
    Normalisation,
    band_statistics,
    far_from_training,
    manifest_id,
    match_histogram,
    match_mean_std,
    match_output,
)
from satdiffmoe.errors import UserError

RNG = np.random.default_rng(0)
# fMoW-Sentinel B4, B3, B2 mean and σ (DiffusionSat SentinelNormalize)
S2_MEAN, S2_STD = [1136.26026392, 1120.77120066, 1184.3824625], [965.23119807, 712.12507725, 650.2842772]


def test_scale_maps_zero_and_high_onto_minus_one_and_one():
    norm = Normalisation.scale(10000, 1.0, "reflectance")
    assert norm.forward(np.array([0.0, 0.5, 1.0]).reshape(1, 1, 3)).ravel().tolist() == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("norm", [
    Normalisation.scale(10000, 1.0, "reflectance"),
    Normalisation.scale(4095),
    Normalisation.stretch(S2_MEAN, S2_STD, 2.0, 255, "Sentinel-2 DN"),
], ids=["scale-reflectance", "scale-12bit", "stretch-2sigma"])
def test_forward_then_inverse_round_trips(norm):
    values = RNG.uniform(-500, 4000, size=(2, 3, 5, 5))  # N×C×H×W, values outside [low, high] too
    np.testing.assert_allclose(norm.inverse(norm.forward(values)), values, rtol=1e-12, atol=1e-9)
    pixels = RNG.uniform(-1, 1, size=(3, 5, 5))
    np.testing.assert_allclose(norm.forward(norm.inverse(pixels)), pixels, rtol=0, atol=1e-12)


def test_stretch_puts_mean_minus_and_plus_k_sigma_at_the_ends():
    norm = Normalisation.stretch(S2_MEAN, S2_STD, 2.0, 255, "Sentinel-2 DN")
    ends = np.stack([np.array(S2_MEAN) - 2 * np.array(S2_STD), np.array(S2_MEAN) + 2 * np.array(S2_STD)], -1)
    np.testing.assert_allclose(norm.forward(ends[:, None, :]), [[[-1.0, 1.0]]] * 3, atol=1e-12)


def test_dict_round_trip():
    norm = Normalisation.stretch(S2_MEAN, S2_STD, 2.0, 255, "Sentinel-2 DN", "SentinelNormalize")
    assert Normalisation.from_dict(norm.to_dict()) == norm
    assert norm.to_dict()["extra"] == {"mean": S2_MEAN, "std": S2_STD, "k": 2.0}


def test_a_bad_interval_is_refused():
    with pytest.raises(ValueError, match="high > low"):
        Normalisation("stretch", 255, (10.0,), (10.0,))


def test_mean_std_matching_gives_the_references_mean_and_std():
    output = RNG.normal(0.4, 0.1, size=(3, 16, 16))
    reference = RNG.normal([-0.5, 0.0, 0.3], [0.05, 0.2, 0.1], size=(2, 4, 4, 3)).transpose(0, 3, 1, 2)
    matched = match_mean_std(output, reference)
    flat = reference.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(matched.mean((1, 2)), flat.mean(1), atol=1e-12)
    np.testing.assert_allclose(matched.std((1, 2)), flat.std(1), atol=1e-12)
    np.testing.assert_allclose(np.corrcoef(matched[0].ravel(), output[0].ravel())[0, 1], 1.0)  # linear


def test_a_constant_band_becomes_the_reference_mean():
    matched = match_mean_std(np.zeros((1, 4, 4)), np.full((1, 2, 2), 0.25))
    assert (matched == 0.25).all()


def test_histogram_matching_of_equal_sizes_gives_the_references_sorted_values():
    output = RNG.normal(size=(2, 8, 8))
    reference = RNG.uniform(-1, 1, size=(4, 2, 4, 4))  # 4 LRs × 16 px = 64 values per band
    reference[0, 0, 0, :2] = 0.5  # ties in the reference are reproduced too
    matched = match_histogram(output, reference)
    for band in range(2):
        assert np.sort(matched[band].ravel()).tolist() == np.sort(reference[:, band].ravel()).tolist()
        assert (np.argsort(matched[band].ravel(), kind="stable")
                == np.argsort(output[band].ravel(), kind="stable")).all()  # ranks kept


def test_histogram_matching_keeps_a_flat_area_flat_and_stays_in_the_references_range():
    output = np.zeros((1, 8, 8))
    output[0, :, 4:] = RNG.uniform(0.1, 1.0, size=(8, 4))
    reference = RNG.uniform(-0.3, 0.2, size=(1, 1, 3, 3))
    matched = match_histogram(output, reference)
    assert np.unique(matched[0, :, :4]).size == 1  # 32 tied pixels share one value
    assert reference.min() <= matched.min() and matched.max() <= reference.max()


@pytest.mark.parametrize("match", [match_mean_std, match_histogram])
def test_masked_reference_pixels_are_excluded(match):
    reference = np.full((2, 1, 4, 4), 0.2)
    reference[1, 0, 0, :] = 1.0  # a cloud row in the second LR ...
    mask = np.ones((2, 4, 4))
    mask[1, 0, :] = 0  # ... masked out
    matched = match(RNG.normal(size=(1, 8, 8)), reference, mask)
    np.testing.assert_allclose(matched, 0.2, atol=1e-12)  # the clear pixels are all 0.2


def test_an_all_masked_reference_is_one_clear_error():
    with pytest.raises(UserError, match="every LR pixel is masked"):
        match_mean_std(np.zeros((1, 4, 4)), np.zeros((1, 1, 2, 2)), np.zeros((1, 2, 2)))


def test_match_none_returns_the_output_unchanged():
    output = RNG.normal(size=(3, 4, 4))
    assert match_output(output, np.zeros((1, 3, 2, 2)), None, "none") is output


def _manifest(means, stds):
    return {"bands": ["R", "G", "B"], "stats": {"lr_scenes": {"count": 50, "mean_of_means": means,
                                                               "std_of_means": stds}}}


def test_an_input_mean_beyond_three_sigma_of_the_training_scene_means_is_named():
    stack = np.full((2, 3, 4, 4), 0.2)
    stack[:, 2] = 0.6  # B: 0.6 vs training 0.2 ± 0.05 = 8σ
    warning = far_from_training(stack, None, _manifest([0.2, 0.2, 0.2], [0.05, 0.05, 0.05]))
    assert warning.startswith("warning: the input is far from the training data (B mean 0.600 vs 0.200 ± 0.050 (8σ)")
    assert " R " not in warning and "G mean" not in warning


def test_within_three_sigma_is_quiet():
    stack = np.full((1, 3, 4, 4), 0.34)  # 2.8σ from 0.2 ± 0.05
    assert far_from_training(stack, None, _manifest([0.2] * 3, [0.05] * 3)) is None


def test_the_spread_floor_keeps_near_identical_training_scenes_from_flagging_everything():
    stack = np.full((1, 3, 4, 4), 0.225)  # 25σ of a 0.001 spread, but 2.5 × the 0.01 floor
    assert far_from_training(stack, None, _manifest([0.2] * 3, [0.001] * 3)) is None


def test_no_training_statistics_no_warning():
    assert far_from_training(np.ones((1, 3, 2, 2)), None, {"stats": {"hr_mean": [0.1] * 3}}) is None


def test_band_statistics_use_clear_pixels_only():
    stack = np.array([[[[0.1, 0.9]]]])  # 1 LR, 1 band, 1×2 px
    assert band_statistics(stack, np.array([[[1, 0]]])) == ([0.1], [0.0])


def test_manifest_id_is_the_one_evaluate_records(tmp_path):
    from satdiffmoe.evaluation.dataset import dataset_identity

    (tmp_path / "manifest.json").write_text('{"source": "fmow"}')
    cfg = OmegaConf.create({"data": {"root": str(tmp_path), "test_subset": 0}})
    assert manifest_id((tmp_path / "manifest.json").read_bytes()) == dataset_identity(cfg, 1)["manifest_id"]
