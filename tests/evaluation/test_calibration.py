"""Uncertainty calibration: Spearman, sparsification curves and AUSE on maps with known answers."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import spearmanr

from satdiffmoe.evaluation import calibration as C
from satdiffmoe.reports.figures import plot_sparsification

torch.set_num_threads(1)


def error_maps(batch=3, size=16, seed=0):
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- Spearman
def test_spearman_is_one_for_the_error_itself_and_minus_one_reversed():
    error = error_maps()
    torch.testing.assert_close(C.spearman(error, error), torch.ones(3))
    torch.testing.assert_close(C.spearman(-error, error), -torch.ones(3))
    torch.testing.assert_close(C.spearman(error.exp(), error), torch.ones(3))  # ranks only


def test_spearman_agrees_with_scipy_on_ties():
    error = error_maps(batch=1, size=6)
    coarse = (error * 3).floor()  # many ties
    expected = spearmanr(coarse.flatten().numpy(), error.flatten().numpy()).statistic
    assert C.spearman(coarse, error).item() == pytest.approx(expected, abs=1e-6)


def test_spearman_of_a_constant_map_is_nan():
    assert math.isnan(C.spearman(torch.ones(1, 1, 4, 4), error_maps(batch=1, size=4)).item())


# -------------------------------------------------------------------------------------- sparsification
def test_sparsification_curves_start_at_one_and_the_oracle_never_rises():
    error = error_maps()
    fractions, curve, oracle = C.sparsification(error_maps(seed=1), error, steps=20)
    assert fractions.shape == (20,) and fractions[0] == 0 and fractions[-1] == pytest.approx(0.95)
    assert curve.shape == oracle.shape == (3, 20)
    torch.testing.assert_close(curve[:, 0], torch.ones(3))
    torch.testing.assert_close(oracle[:, 0], torch.ones(3))
    assert (oracle.diff(dim=1) <= 1e-6).all()
    assert (curve >= oracle - 1e-6).all()


def test_sparsification_removes_the_most_uncertain_pixels():
    error = torch.tensor([[[[1.0, 2.0, 3.0, 4.0]]]])
    _, curve, oracle = C.sparsification(error, error, steps=4)
    # removing 0, 1, 2, 3 of the largest: means 2.5, 2, 1.5, 1 over the base mean 2.5
    torch.testing.assert_close(curve, torch.tensor([[1.0, 0.8, 0.6, 0.4]]))
    torch.testing.assert_close(oracle, curve)


def test_a_constant_uncertainty_gives_a_flat_curve():
    _, curve, _ = C.sparsification(torch.zeros(2, 1, 8, 8), error_maps(batch=2, size=8), steps=10)
    torch.testing.assert_close(curve, torch.ones(2, 10))


# ------------------------------------------------------------------------------------------------ AUSE
def test_ause_is_zero_for_a_perfect_uncertainty():
    error = error_maps()
    torch.testing.assert_close(C.ause(error, error), torch.zeros(3))
    torch.testing.assert_close(C.ause(2 * error + 1, error), torch.zeros(3))


def test_ause_of_a_random_uncertainty_is_clearly_positive():
    value = C.ause(error_maps(seed=1, size=32), error_maps(size=32))
    assert (value > 0.05).all()
    # uniform errors: curve ≈ 1, oracle ≈ 1 − f, area ≈ ∫₀^0.95 f df ≈ 0.45
    assert value.mean().item() == pytest.approx(0.45, abs=0.08)


def test_ause_of_a_reversed_uncertainty_is_worse_than_random():
    error = error_maps(size=32)
    assert (C.ause(-error, error) > C.ause(error_maps(seed=1, size=32), error)).all()


# ------------------------------------------------------------------------------------------------ plot
def test_plot_sparsification_writes_a_png(tmp_path):
    error = error_maps()
    fractions, curve, oracle = C.sparsification(error_maps(seed=1), error)
    path = plot_sparsification({"satdiffmoe": (fractions, curve.mean(0), oracle.mean(0)),
                                  "other": (fractions.tolist(), curve.mean(0).tolist(), oracle.mean(0).tolist())},
                                 tmp_path / "figures" / "sparsification.png")
    assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
