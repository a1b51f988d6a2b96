"""The free uncertainty maps of the calibration table, scored against a hand-made error."""

from __future__ import annotations

import pytest
import torch

from satdiffmoe.evaluation.uncertainty_references import UncertaintyReferences, constant_map, lr_std_map


def scene():
    """HR 0 everywhere; the output is off by 0.5 (unit range) at pixel (0, 0) only. Two valid LRs at the
    HR size (bicubic is the identity) disagree at (0, 0) only; a third, padding, is noise."""
    hr = torch.zeros(1, 3, 4, 4)
    image = hr.clone()
    image[..., 0, 0] = 1.0
    lr = torch.zeros(1, 3, 3, 4, 4)
    lr[:, 1, :, 0, 0] = 1.0
    lr[:, 2] = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batch = {"hr": hr, "lr": lr, "lr_valid": torch.tensor([[True, True, False]]), "key": ["a"]}
    return batch, image


def rows(batch, seed, values):
    return [{"key": key, "seed": seed, **{n: float(v[i]) for n, v in values.items()}}
            for i, key in enumerate(batch["key"])]


def test_lr_std_map_is_the_spread_of_the_valid_dates_only():
    batch, _ = scene()
    expected = torch.zeros(1, 1, 4, 4)
    expected[..., 0, 0] = 0.25  # dates 0.5 and 1.0 in unit range: std 0.25; the padding date is ignored
    torch.testing.assert_close(lr_std_map(batch), expected)
    assert constant_map(batch).shape == (1, 1, 4, 4) and constant_map(batch).std() == 0


def test_references_are_scored_against_the_models_error():
    batch, image = scene()
    refs = UncertaintyReferences(["psnr", "unc_spearman", "ause"], rows)
    refs.add(batch, image, seed=0)
    assert refs.metrics == ["unc_spearman", "ause"]
    (lr_row,), (constant_row,) = refs.rows["unc_lr_std"], refs.rows["unc_constant"]
    # the LR map is high exactly where the error is: the oracle's ranking
    assert lr_row["unc_spearman"] == pytest.approx(1.0) and lr_row["ause"] == pytest.approx(0.0, abs=1e-7)
    # a constant map ranks nothing: no ρ, and the AUSE of a random ranking. 16 pixels, one with all the
    # error; the curve is flat at 1; the oracle is 1 until it removes a whole pixel (f = 0, 0.05 remove
    # floor(16 f) = 0) and 0 from f = 0.10 on: trapezoid of curve − oracle = 0.05 · (17 + 0.5) = 0.875
    assert constant_row["unc_spearman"] != constant_row["unc_spearman"]  # NaN
    assert constant_row["ause"] == pytest.approx(0.875, abs=1e-6)
