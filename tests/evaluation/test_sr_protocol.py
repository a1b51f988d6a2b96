"""The SR protocol against hand-computed values and the cases that define each score."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from satdiffmoe.evaluation import sr_protocol as P

torch.set_num_threads(1)


def model_units(unit: torch.Tensor) -> torch.Tensor:
    """[0, 1] → the [-1, 1] range the functions take."""
    return unit * 2 - 1


def random_unit(*shape, seed=0, low=0.1, high=0.9):
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(*shape, generator=g)


def colour_image(rgb, size=4):
    return torch.tensor(rgb, dtype=torch.float).view(1, 3, 1, 1).expand(1, 3, size, size)


# ------------------------------------------------------------------------------------------------ SAM
def test_sam_of_an_image_against_itself_is_zero():
    image = model_units(random_unit(2, 4, 8, 8))
    torch.testing.assert_close(P.sam(image, image), torch.zeros(2), atol=1e-5, rtol=0)


def test_sam_ignores_brightness():
    unit = random_unit(2, 3, 8, 8, high=0.5)
    assert P.sam(model_units(2 * unit), model_units(unit)).abs().max() < 1e-5


def test_sam_of_a_hue_change_is_the_angle_between_the_colours():
    # (0.5, 0.5, 0) vs (0.5, 0, 0.5): cos = 0.25 / (0.5 · 0.5) = 1/2 → 60°
    pred, target = colour_image([0.5, 0.5, 0.0]), colour_image([0.5, 0.0, 0.5])
    assert P.sam(model_units(pred), model_units(target)).item() == pytest.approx(60.0, abs=1e-4)


def test_sam_of_black_pixels_is_finite():
    black = -torch.ones(1, 3, 4, 4)
    assert P.sam(black, black).item() == pytest.approx(0.0, abs=1e-5)
    # black vs pure red: the guard makes black neutral grey, angle(grey, red) = acos(1/√3) = 54.74°
    assert P.sam(black, model_units(colour_image([1.0, 0.0, 0.0]))).item() == pytest.approx(54.7356, abs=1e-3)


# ---------------------------------------------------------------------------------------------- ERGAS
def test_ergas_matches_walds_formula_computed_by_hand():
    pred, target = random_unit(1, 2, 3, 3, seed=1), random_unit(1, 2, 3, 3, seed=2)
    p, t = pred[0].numpy().astype(np.float64), target[0].numpy().astype(np.float64)
    rmse = np.sqrt(((p - t) ** 2).mean(axis=(1, 2)))
    mu = t.mean(axis=(1, 2))
    expected = 100 * (1 / 4) * np.sqrt(np.mean((rmse / mu) ** 2))  # h/l = 1/4 for a ×4 scale
    assert P.ergas(model_units(pred), model_units(target), ratio=4).item() == pytest.approx(expected, rel=1e-5)


def test_ergas_of_a_perfect_prediction_is_zero():
    target = model_units(random_unit(2, 3, 8, 8))
    torch.testing.assert_close(P.ergas(target, target, ratio=3), torch.zeros(2))


# ------------------------------------------------------------------------------------------ PSNR ratio
def test_psnr_ratio_is_one_when_pred_is_the_reference():
    target = model_units(random_unit(2, 3, 8, 8, seed=0))
    reference = model_units(random_unit(2, 3, 8, 8, seed=1))
    torch.testing.assert_close(P.psnr_ratio(reference, target, reference), torch.ones(2))


def test_psnr_ratio_is_the_quotient_of_the_two_psnrs():
    target = torch.zeros(1, 3, 4, 4)
    # offsets 0.02 and 0.2 in [-1, 1] = 0.01 and 0.1 in [0, 1]: 40 dB / 20 dB
    assert P.psnr_ratio(target + 0.02, target, target + 0.2).item() == pytest.approx(2.0, rel=1e-4)


# ------------------------------------------------------------------------------------------ consistency
def lr_stack(batch=2, branches=3, channels=3, size=4, seed=0):
    return model_units(random_unit(batch, branches, channels, size, size, seed=seed))


def test_consistency_is_zero_for_an_sr_that_area_downsamples_to_the_lr():
    lr = lr_stack(branches=1)
    pred = F.interpolate(lr[:, 0], scale_factor=4, mode="nearest")
    valid = torch.ones(2, 1, dtype=torch.bool)
    torch.testing.assert_close(P.consistency_l1(pred, lr, valid), torch.zeros(2), atol=1e-6, rtol=0)
    torch.testing.assert_close(P.consistency_sam(pred, lr, valid), torch.zeros(2), atol=1e-3, rtol=0)


def test_consistency_ignores_cloudy_pixels_and_invalid_lrs():
    lr = lr_stack(batch=1, branches=2)
    pred = F.interpolate(lr[:, 0], scale_factor=4, mode="nearest")
    garbage = lr.clone()
    garbage[:, 0, :, :, :2] = 1.0  # clouds over the left half of LR 0
    garbage[:, 1] = -lr[:, 1]  # LR 1 is padding
    mask = torch.ones(1, 2, 4, 4)
    mask[:, 0, :, :2] = 0
    valid = torch.tensor([[True, False]])
    assert P.consistency_l1(pred, garbage, valid, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert P.consistency_sam(pred, garbage, valid, mask).item() == pytest.approx(0.0, abs=1e-3)


def test_consistency_l1_averages_the_per_lr_errors_in_unit_reflectance():
    lr = torch.zeros(1, 2, 3, 4, 4)
    lr[:, 1] += 0.2  # 0.1 brighter in [0, 1]
    pred = torch.zeros(1, 3, 16, 16)
    valid = torch.ones(1, 2, dtype=torch.bool)
    assert P.consistency_l1(pred, lr, valid).item() == pytest.approx((0.0 + 0.1) / 2, abs=1e-6)


def test_consistency_is_nan_without_any_clear_pixel():
    lr = lr_stack(batch=1, branches=2)
    pred = torch.zeros(1, 3, 16, 16)
    mask = torch.zeros(1, 2, 4, 4)
    assert math.isnan(P.consistency_l1(pred, lr, torch.ones(1, 2, dtype=torch.bool), mask).item())


# -------------------------------------------------------------------------------------------- synthesis
def test_synthesis_is_zero_for_the_upsampled_lr_and_for_lr_scale_changes():
    lr_up = model_units(random_unit(2, 3, 16, 16))
    torch.testing.assert_close(P.synthesis(lr_up, lr_up, lr_size=(4, 4)), torch.zeros(2))
    blocks = F.interpolate(random_unit(2, 3, 4, 4, seed=3, low=-0.1, high=0.1), scale_factor=4, mode="nearest")
    assert P.synthesis(lr_up + blocks, lr_up, lr_size=(4, 4)).abs().max() < 1e-6
    assert P.synthesis(lr_up + 0.1, lr_up).abs().max() < 1e-6  # without lr_size: a brightness bias only


def test_synthesis_measures_detail_finer_than_an_lr_pixel():
    lr_up = torch.zeros(1, 3, 16, 16)
    checker = (torch.arange(16)[:, None] + torch.arange(16)[None, :]) % 2 * 2 - 1  # ±1, mean 0 per 4×4 block
    detail = 0.2 * checker.float()  # ±0.2 in [-1, 1] = ±0.1 in [0, 1]
    assert P.synthesis(lr_up + detail, lr_up, lr_size=(4, 4)).item() == pytest.approx(0.1, abs=1e-6)


# ------------------------------------------------------------------------------------------ correctness
def correctness_triplet(seed=0):
    hr = model_units(random_unit(2, 3, 16, 16, seed=seed))
    lr_up = model_units(random_unit(2, 3, 16, 16, seed=seed + 1))
    return hr, lr_up


def test_correctness_of_the_hr_itself_is_all_improvement():
    hr, lr_up = correctness_triplet()
    result = P.correctness(hr, hr, lr_up)
    torch.testing.assert_close(result["improvement"], torch.full((2,), 100.0))
    torch.testing.assert_close(result["omission"] + result["hallucination"], torch.zeros(2))


def test_correctness_of_the_upsampled_lr_is_all_omission():
    hr, lr_up = correctness_triplet()
    torch.testing.assert_close(P.correctness(lr_up, hr, lr_up)["omission"], torch.full((2,), 100.0))


def test_correctness_of_an_sr_far_from_both_is_hallucination():
    hr = model_units(random_unit(2, 3, 16, 16, seed=0, low=0.45, high=0.55))
    lr_up = model_units(random_unit(2, 3, 16, 16, seed=1, low=0.45, high=0.55))
    far = torch.where(torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)) > 0.5, 1.0, -1.0)
    torch.testing.assert_close(P.correctness(far, hr, lr_up)["hallucination"], torch.full((2,), 100.0))


def test_correctness_percentages_sum_to_one_hundred():
    hr, lr_up = correctness_triplet()
    pred = model_units(random_unit(2, 3, 16, 16, seed=9))
    result = P.correctness(pred, hr, lr_up)
    torch.testing.assert_close(sum(result.values()), torch.full((2,), 100.0))


# ----------------------------------------------------------------------------------------- one batch
def test_protocol_metrics_returns_every_score_per_image():
    hr, lr_up = correctness_triplet()
    lr = lr_stack(batch=2, branches=3)
    batch = {"hr": hr, "lr": lr, "lr_valid": torch.tensor([[True, True, False], [True, False, False]]),
             "lr_mask": torch.ones(2, 3, 4, 4)}
    scores = P.protocol_metrics(hr, batch, lr_up)
    assert set(scores) == {"sam", "ergas", "psnr_ratio", "consistency_l1", "consistency_sam", "synthesis",
                           "improvement", "omission", "hallucination"}
    assert all(v.shape == (2,) and torch.isfinite(v).all() for v in scores.values())
    assert scores["sam"].abs().max() < 1e-4 and scores["ergas"].abs().max() < 1e-6
