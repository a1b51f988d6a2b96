"""Each consensus rule on hand-made estimates, with the numbers that matter visible."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from satdiffmoe.errors import UserError
from satdiffmoe.sampling.consensus import FusionContext, fuse_estimates, optimized_objective, time_weights


def estimates(batch=1, branches=3, seed=0):
    return torch.randn(batch, branches, 2, 4, 4, generator=torch.Generator().manual_seed(seed))


def all_valid(batch=1, branches=3):
    return torch.ones(batch, branches, dtype=torch.bool)


def test_mean_is_the_arithmetic_mean_of_valid_branches():
    x0 = estimates(branches=4)
    valid = torch.tensor([[True, True, True, False]])
    fused = fuse_estimates(x0, "mean", FusionContext(valid=valid))
    torch.testing.assert_close(fused, x0[:, :3].mean(1))


def test_time_weighted_follows_exp_of_minus_abs_dt_over_tau():
    x0 = estimates(branches=2)
    context = FusionContext(valid=all_valid(branches=2), dt=torch.tensor([[0.0, -180.0]]), tau=180.0)
    w = torch.tensor([1.0, torch.e ** -1])
    torch.testing.assert_close(fuse_estimates(x0, "time_weighted", context),
                               (w[0] * x0[:, 0] + w[1] * x0[:, 1]) / w.sum())


def test_time_weighted_converges_to_the_others_when_one_dt_is_far():
    x0 = estimates(branches=4)
    context = FusionContext(valid=all_valid(branches=4), dt=torch.tensor([[-2.0, 1.0, 3.0, 5000.0]]))
    torch.testing.assert_close(fuse_estimates(x0, "time_weighted", context),
                               fuse_estimates(x0[:, :3], "time_weighted",
                                              FusionContext(valid=all_valid(), dt=context.dt[:, :3])))


def test_unknown_dt_gets_the_mean_weight_and_far_archives_do_not_underflow():
    context = FusionContext(valid=all_valid(), dt=torch.tensor([[0.0, 180.0, float("nan")]]), tau=180.0)
    w = time_weights(context)[0]
    torch.testing.assert_close(w[2], (w[0] + w[1]) / 2)
    far = time_weights(FusionContext(valid=all_valid(branches=2), dt=torch.tensor([[90000.0, 90180.0]])))
    torch.testing.assert_close(far[0], torch.tensor([1.0, torch.e ** -1]))


def test_mask_weighted_ignores_a_branch_wherever_its_mask_is_zero():
    x0 = estimates(branches=3)
    masks = torch.ones(1, 3, 8, 8)
    masks[0, 2, :, :4] = 0  # branch 2 cloudy on the left half of the LR
    fused = fuse_estimates(x0, "mask_weighted", FusionContext(valid=all_valid(), lr_mask=masks))
    torch.testing.assert_close(fused[..., :2], x0[:, :2, ..., :2].mean(1))  # latent 4 px wide: left 2
    torch.testing.assert_close(fused[..., 2:], x0[..., 2:].mean(1))


def test_mask_weighted_falls_back_to_equal_weights_where_every_mask_is_zero():
    x0 = estimates(branches=2)
    masks = torch.zeros(1, 2, 4, 4)
    masks[0, 0, 0, 0] = 1
    fused = fuse_estimates(x0, "mask_weighted", FusionContext(valid=all_valid(branches=2), lr_mask=masks))
    torch.testing.assert_close(fused[..., 0, 0], x0[:, 0, ..., 0, 0])
    torch.testing.assert_close(fused[..., 3, 3], x0[..., 3, 3].mean(1))


def test_mask_weighted_needs_one_mask_per_branch():
    with pytest.raises(UserError, match="one LR mask per branch"):
        fuse_estimates(estimates(), "mask_weighted", FusionContext(valid=all_valid(), lr_mask=torch.ones(1, 5, 4, 4)))


def test_optimized_reduces_its_objective_and_moves_toward_the_lrs():
    x0 = estimates(branches=3)
    hr = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(9))
    lr = F.interpolate(hr, size=(2, 2), mode="area")[:, None].expand(1, 3, 2, 2, 2)
    context = FusionContext(valid=all_valid(), lr=lr, lr_mask=torch.ones(1, 3, 2, 2), optimize_steps=10,
                            optimize_lr=0.1, dc_weight=5.0)
    start = fuse_estimates(x0, "mean", context)
    fused = fuse_estimates(x0, "optimized", context)
    weights = torch.ones(1, 3)
    assert optimized_objective(fused, x0, context, weights) < 0.8 * optimized_objective(start, x0, context, weights)
    def residual(x):
        return (F.interpolate(x, size=(2, 2), mode="area") - lr[:, 0]).abs().mean()

    assert residual(fused) < residual(start)


def test_optimized_ignores_padding_branches():
    x0 = estimates(branches=3)
    lr = torch.zeros(1, 3, 2, 2, 2)
    padded_x0 = torch.cat([x0, torch.full_like(x0[:, :1], 1e3)], 1)
    padded_lr = torch.cat([lr, torch.full_like(lr[:, :1], 7.0)], 1)
    base = fuse_estimates(x0, "optimized", FusionContext(valid=all_valid(), lr=lr))
    padded = fuse_estimates(padded_x0, "optimized", FusionContext(
        valid=torch.tensor([[True, True, True, False]]), lr=padded_lr))
    torch.testing.assert_close(padded, base)


def test_unknown_rule_names_the_valid_ones():
    with pytest.raises(UserError, match="mean, time_weighted, mask_weighted, optimized"):
        fuse_estimates(estimates(), "median", FusionContext(valid=all_valid()))


def test_optimized_fits_every_observed_lr_of_a_single_branch_and_skips_unobserved_slots():
    # DiffusionSat: one branch, its LRs are the T frames it is conditioned on (lr_valid, not valid)
    x0 = estimates(branches=1)
    lrs = torch.randn(1, 3, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    observed = torch.tensor([[True, True, False]])
    context = FusionContext(valid=all_valid(branches=1), lr=lrs, lr_valid=observed, optimize_steps=20, dc_weight=5.0)
    fused = fuse_estimates(x0, "optimized", context)
    down = F.interpolate(fused, size=(2, 2), mode="area")
    target = lrs[:, :2].mean(1)  # the least-squares fit of two equally weighted observations
    start = F.interpolate(x0[:, 0], size=(2, 2), mode="area")
    assert (down - target).abs().mean() < 0.5 * (start - target).abs().mean()
    # the unobserved slot does not count, whatever it holds
    garbage = lrs.clone()
    garbage[:, 2] = 1e3
    torch.testing.assert_close(fuse_estimates(x0, "optimized", FusionContext(
        valid=all_valid(branches=1), lr=garbage, lr_valid=observed, optimize_steps=20, dc_weight=5.0)), fused)
    # observations that belong to no branch carry no per-branch mask: mask weighting is the plain mean
    assert torch.equal(fuse_estimates(x0, "mask_weighted", FusionContext(
        valid=all_valid(branches=1), lr_mask=torch.zeros(1, 3, 2, 2), lr_valid=observed)), x0[:, 0])
