"""The uncertainty map (`sampler.uncertainty`): how much the branches disagree before they are fused."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from sampling_toys import SCHEDULE, reference_ddim, sampler_cfg

from satdiffmoe.data.lr_stack import bicubic_spread_of
from satdiffmoe.errors import UserError
from satdiffmoe.sampling import BranchInputs, FusedSampler, SamplerConfig
from satdiffmoe.sampling import uncertainty as U

C, H, W = 2, 8, 8


def inputs_for(cond: torch.Tensor, lr: torch.Tensor | None = None) -> BranchInputs:
    batch, branches = cond.shape[:2]
    return BranchInputs(cond, torch.zeros(batch, branches), torch.ones(batch, branches, dtype=torch.bool), lr=lr)


def uncertainty(denoise, cond, lr=None, **cfg) -> torch.Tensor:
    sampler = FusedSampler(denoise, SCHEDULE, "epsilon", sampler_cfg(nfe=10, **cfg))
    return sampler.sample(inputs_for(cond, lr), (C, H, W), torch.Generator().manual_seed(0)).uncertainty


def four_lrs():
    return torch.randn(1, 4, C, H, W, generator=torch.Generator().manual_seed(1))


class ConstantEstimate:
    """The epsilon whose Tweedie estimate is the branch's condition at every step: x0_i = cond_i."""

    alphas_cumprod = DDIMScheduler.from_config(SCHEDULE).alphas_cumprod

    def __call__(self, z, t, cond, dt):
        alpha_bar = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
        return (z - alpha_bar.sqrt() * cond) / (1 - alpha_bar).sqrt()


@pytest.mark.parametrize("fusion_every", [1, 3, None])
def test_latent_map_of_constant_estimates_is_the_std_over_branches(fusion_every):
    cond = four_lrs()
    expected = cond.std(1, unbiased=False).mean(1, keepdim=True)  # every fusion step sees the same spread
    got = uncertainty(ConstantEstimate(), cond, fusion_every=fusion_every, uncertainty="latent")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("fusion_every", [3, None])
def test_pixel_map_is_the_std_of_the_clamped_estimates_in_unit_range(fusion_every, monkeypatch):
    cond = 0.8 * four_lrs()  # some pixels beyond [-1, 1]: the decoded images are clamped
    expected = (cond.clamp(-1, 1) / 2).std(1, unbiased=False).mean(1, keepdim=True)
    for steps in (1, 3):  # the last step only, and the last three fusion steps (decoded in the loop)
        monkeypatch.setattr(U, "PIXEL_STEPS", steps)
        got = uncertainty(ConstantEstimate(), cond, fusion_every=fusion_every, uncertainty="pixel")
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_pixel_map_averages_the_variance_of_the_last_fusion_steps(toy, monkeypatch):
    cond = four_lrs()
    seen = {}  # the branch estimates of every fusion step, recorded by wrapping the accumulator
    original = U.BranchSpread.add

    def add(self, k, x0, valid):
        seen[k] = x0.clone()
        original(self, k, x0, valid)

    monkeypatch.setattr(U.BranchSpread, "add", add)
    monkeypatch.setattr(U, "PIXEL_STEPS", 2)
    got = uncertainty(toy, cond, fusion_every=3, uncertainty="pixel")  # NFE 10: fusion at 0, 3, 6, 9
    assert sorted(seen) == [0, 3, 6, 9]
    variances = [(seen[k].clamp(-1, 1) / 2).var(1, unbiased=False) for k in (6, 9)]
    torch.testing.assert_close(got, ((variances[0] + variances[1]) / 2).sqrt().mean(1, keepdim=True),
                               atol=1e-6, rtol=1e-5)


def test_lr_mix_is_the_mean_with_the_lr_spread_rescaled_to_the_branch_mean():
    branch = torch.tensor([1.0, 3.0]).view(1, 1, 1, 2)  # mean 2
    lr = torch.tensor([0.0, 0.5]).view(1, 1, 1, 2)  # mean 0.25: scaled by 8 -> [0, 4]
    torch.testing.assert_close(U.mix(branch, lr), torch.tensor([0.5, 3.5]).view(1, 1, 1, 2))
    torch.testing.assert_close(U.mix(torch.zeros_like(branch), lr), lr)  # one branch: the LR term alone
    torch.testing.assert_close(U.mix(branch, torch.zeros_like(lr)), branch)  # one LR: the branch term alone


def test_bicubic_spread_uses_the_valid_lrs_only_in_unit_range():
    lr = torch.stack([torch.full((C, 4, 4), v) for v in (0.2, -0.2, 1.0)])[None]  # constant dates
    valid = torch.tensor([[True, True, False]])
    # valid dates in [0, 1] units: 0.6 and 0.4 -> std 0.1 everywhere (bicubic of a constant is that constant)
    torch.testing.assert_close(bicubic_spread_of(lr, valid, (8, 8)), torch.full((1, 1, 8, 8), 0.1))
    assert bicubic_spread_of(lr, torch.tensor([[True, False, False]]), (8, 8)).abs().max() == 0


@pytest.mark.parametrize("space", ["latent", "pixel"])
def test_plus_lr_mixes_the_sampler_map_with_the_lr_stack(toy, space):
    cond = four_lrs()
    lr = torch.randn(1, 4, C, 4, 4, generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    branch = uncertainty(toy, cond, lr=lr, fusion_every=3, uncertainty=space)
    expected = U.mix(branch, bicubic_spread_of(lr, torch.ones(1, 4, dtype=torch.bool), (H, W)))
    torch.testing.assert_close(uncertainty(toy, cond, lr=lr, fusion_every=3, uncertainty=f"{space}+lr"), expected)
    with pytest.raises(UserError, match="needs the LR stack"):
        uncertainty(toy, cond, fusion_every=3, uncertainty=f"{space}+lr")


def test_local_std_is_the_windowed_std_in_unit_range():
    image = -torch.ones(1, 1, 12, 12)
    image[..., 6:] = 1.0  # two flat halves in [-1, 1]: 0 and 1 in unit range
    texture = U.local_std(image, window=5)
    assert texture[..., 6, 0] == 0 and texture[..., 6, 11] == 0  # windows inside one half
    # column 5 sees columns 3..7: three at 0, two at 1 -> std sqrt(0.4 · 0.6)
    torch.testing.assert_close(texture[..., 6, 5], torch.tensor([[0.24 ** 0.5]]))


def test_texture_map_is_the_local_std_of_the_returned_image(toy):
    sampler = FusedSampler(toy, SCHEDULE, "epsilon", sampler_cfg(nfe=4, uncertainty="texture"))
    out = sampler.sample(inputs_for(four_lrs()), (C, H, W), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.uncertainty, U.local_std(out.image))
    assert out.uncertainty.shape == (1, 1, H, W) and (out.uncertainty > 0).any()


def test_unknown_uncertainty_option_is_refused():
    with pytest.raises(ValueError, match="sampler.uncertainty must be one of latent, pixel"):
        SamplerConfig(uncertainty="seeds").check()


def test_identical_branches_have_zero_uncertainty(toy):
    repeated = four_lrs()[:, :1].expand(1, 4, C, H, W).clone()
    for fusion_every in (1, 3, None):
        assert uncertainty(toy, repeated, fusion_every=fusion_every, uncertainty="latent").abs().max() < 1e-6


def test_one_branch_has_zero_uncertainty(toy):
    assert uncertainty(toy, four_lrs()[:, :1], fusion_every=2, uncertainty="latent").abs().max() == 0


def test_without_fusion_it_is_the_spread_of_the_final_branch_samples(toy):
    cond = four_lrs()
    finals = torch.stack([reference_ddim(toy, cond[:, i], torch.zeros(1), (1, C, H, W), seed=0, nfe=10)
                          for i in range(4)], 1)
    expected = finals.std(1, unbiased=False).mean(1, keepdim=True)
    torch.testing.assert_close(uncertainty(toy, cond, fusion_every=None, uncertainty="latent"), expected,
                               atol=1e-5, rtol=1e-4)
