"""What the scheduler step integrates after fusion: the fused x0, under every option that shapes it."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler
from sampling_toys import (
    SCHEDULE,
    ConstantEstimateDenoiser,
    GaussianDataDenoiser,
    alphas_sigmas,
    reference_ddim,
    sampler_cfg,
)

from satdiffmoe.errors import UserError
from satdiffmoe.sampling import BranchInputs, FusedSampler
from satdiffmoe.sampling.noise import BranchNoise

SIDE = 64  # 4096 i.i.d. pixels = 4096 samples of a 1-D distribution per run


def one_scene(cond: torch.Tensor) -> BranchInputs:
    branches = cond.shape[0]
    return BranchInputs(cond[None], torch.zeros(1, branches), torch.ones(1, branches, dtype=torch.bool))


def run(denoise, cond, seed=0, **cfg):
    sampler = FusedSampler(denoise, SCHEDULE, "epsilon", sampler_cfg(**cfg))
    return sampler.sample(one_scene(cond), tuple(cond.shape[1:]), torch.Generator().manual_seed(seed))


def two_constant_branches():
    """Branch estimates c_1, c_2 (whatever the state), so the consensus is known: c_bar = (c_1 + c_2)/2."""
    g = torch.Generator().manual_seed(3)
    return torch.randn(2, 1, SIDE, SIDE, generator=g)


def test_renoised_sampling_of_an_exact_gaussian_model_keeps_its_mean_and_std():
    # data N(0.5, 1); the paper's fusion_every=5, NFE 50. Measured std with renoise=0.9: 0.88 (plain DDIM
    # at this NFE: 0.97; the earlier update that only swapped epsilon: 1.36). Re-noising a posterior-mean
    # x0 cannot keep the variance exactly: E[eps | z] has variance < 1, so mixing it with fresh noise
    # removes a little of the spread at every fusion step.
    out = run(GaussianDataDenoiser(0.5, 1.0), torch.zeros(1, 1, SIDE, SIDE), nfe=50, fusion_every=5, renoise=0.9)
    assert abs(out.latent.mean().item() - 0.5) < 0.05
    assert abs(out.latent.std().item() - 1.0) < 0.15


def test_a_renoised_step_integrates_the_fused_x0():
    # After fusion the state must be alpha' c_bar + sigma' eps' with unit-variance eps': the fused x0 plus
    # noise. The earlier update recomputed x0 from the renoised eps and drifted by (sigma/alpha)(eps - eps').
    cond, nfe = two_constant_branches(), 10
    denoise = ConstantEstimateDenoiser()
    run(denoise, cond, nfe=nfe, fusion_every=1, renoise=0.9, shared_noise=False)
    scheduler = DDIMScheduler.from_config(SCHEDULE)
    scheduler.set_timesteps(nfe)
    for t, z in zip(scheduler.timesteps[1:], denoise.inputs[1:]):
        alpha, sigma = alphas_sigmas(t)
        implied_eps = (z[:, 0] - alpha * cond.mean(0)) / sigma
        assert abs(implied_eps.mean().item()) < 0.1 and abs(implied_eps.std().item() - 1.0) < 0.1


@pytest.mark.parametrize("mode", ["rederive", "keep"])
def test_the_ddim_step_after_fusion_is_alpha_prev_x0_bar_plus_sigma_prev_direction(mode):
    # rederive: direction (z - alpha c_bar)/sigma; keep (DDS-style): the network's own eps_i = (z - alpha c_i)/sigma
    cond, nfe = two_constant_branches(), 6
    denoise = ConstantEstimateDenoiser()
    run(denoise, cond, nfe=nfe, fusion_every=1, eps_after_fusion=mode, shared_noise=False)
    scheduler = DDIMScheduler.from_config(SCHEDULE)
    scheduler.set_timesteps(nfe)
    steps = scheduler.timesteps
    for k in range(nfe - 1):
        (alpha, sigma), (alpha_prev, sigma_prev) = alphas_sigmas(steps[k]), alphas_sigmas(steps[k + 1])
        z = denoise.inputs[k].view(2, 1, SIDE, SIDE)
        estimate = cond.mean(0) if mode == "rederive" else cond
        expected = alpha_prev * cond.mean(0) + sigma_prev * (z - alpha * estimate) / sigma
        torch.testing.assert_close(denoise.inputs[k + 1].view(2, 1, SIDE, SIDE), expected, atol=1e-4, rtol=1e-4)


def test_keep_and_rederive_differ_only_when_branches_disagree(toy):
    cond = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    repeated = cond.expand(3, 2, 8, 8).clone()
    same = [run(toy, repeated, eps_after_fusion=mode).latent for mode in ("rederive", "keep")]
    torch.testing.assert_close(same[0], same[1], atol=1e-5, rtol=1e-5)
    different = torch.randn(3, 2, 8, 8, generator=torch.Generator().manual_seed(2))
    apart = [run(toy, different, eps_after_fusion=mode).latent for mode in ("rederive", "keep")]
    assert (apart[0] - apart[1]).abs().max() > 1e-3


def test_dpm_solver_never_reads_a_fusion_jump_as_curvature():
    # With constant estimates the branch's own trajectory has no curvature: every DPM-Solver++ step must be
    # its first-order (DDIM) form with the x0 of that step, fused c_bar at fusion steps, c_i between them.
    # The stored-history finite difference used to turn c_i - c_bar into a second-order term.
    cond, nfe, every = two_constant_branches(), 6, 2
    denoise = ConstantEstimateDenoiser()
    run(denoise, cond, nfe=nfe, fusion_every=every, scheduler="dpm", shared_noise=False)
    grid = DDIMScheduler.from_config(SCHEDULE)  # the sampler hands DPM-Solver++ DDIM's grid
    grid.set_timesteps(nfe)
    steps = grid.timesteps
    for k in range(nfe - 1):
        (alpha, sigma), (alpha_prev, sigma_prev) = alphas_sigmas(steps[k]), alphas_sigmas(steps[k + 1])
        z = denoise.inputs[k].view(2, 1, SIDE, SIDE)
        x0 = cond.mean(0) if k % every == 0 else cond
        expected = alpha_prev * x0 + sigma_prev * (z - alpha * x0) / sigma
        torch.testing.assert_close(denoise.inputs[k + 1].view(2, 1, SIDE, SIDE), expected, atol=1e-4, rtol=1e-4)


def test_dpm_fusion_of_identical_branches_is_diffusers_multistep_dpm(toy):
    cond = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    fused = run(toy, cond.expand(3, 2, 8, 8).clone(), scheduler="dpm", nfe=6, fusion_every=1)
    alone = run(toy, cond, scheduler="dpm", nfe=6, fusion_every=None)
    torch.testing.assert_close(fused.latent, alone.latent, atol=1e-5, rtol=1e-5)


def test_fusion_drop_that_drops_nothing_is_plain_fusion_and_drop_is_reproducible(toy):
    cond = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(5))
    plain = run(toy, cond, fusion_every=1)
    # a drop probability > 0 takes the DiffusionDrop path; at 1e-9 it keeps every branch
    torch.testing.assert_close(run(toy, cond, fusion_every=1, fusion_drop=1e-9).latent, plain.latent)
    dropped = run(toy, cond, fusion_every=1, fusion_drop=0.5, seed=7)
    torch.testing.assert_close(run(toy, cond, fusion_every=1, fusion_drop=0.5, seed=7).latent, dropped.latent)
    assert (dropped.latent - plain.latent).abs().max() > 1e-3


def test_fusion_drop_consensus_is_the_mean_of_a_kept_subset():
    # constant estimates c_1..c_3: the last consensus is the mean of the branches that stayed in
    cond = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    subsets = [[i for i in range(3) if mask >> i & 1] for mask in range(1, 8)]
    seen = set()
    for seed in range(8):
        latent = run(ConstantEstimateDenoiser(), cond, nfe=3, fusion_every=1, fusion_drop=0.5, seed=seed).latent[0]
        errors = [(latent - cond[subset].mean(0)).abs().max().item() for subset in subsets]
        assert min(errors) < 1e-5
        seen.add(tuple(subsets[errors.index(min(errors))]))
    assert len(seen) > 1  # some fusions left branches out


def test_fusion_drop_keeps_at_least_one_branch_per_scene():
    # Drop 0.99: almost every fusion falls back to one random branch, so the consensus is one of the c_i.
    cond = two_constant_branches()
    out = run(ConstantEstimateDenoiser(), cond, nfe=4, fusion_every=1, fusion_drop=0.99)
    assert min((out.latent[0] - c).abs().max().item() for c in cond) < 1e-5


def test_fusion_drop_on_identical_branches_changes_nothing(toy):
    # identical LRs + shared noise: any subset has the same consensus
    cond = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(run(toy, cond.expand(4, 2, 8, 8).clone(), fusion_drop=0.6).latent,
                               run(toy, cond).latent, atol=1e-5, rtol=1e-5)


def test_single_branch_with_keep_is_still_plain_ddim(toy):
    cond = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    out = run(toy, cond, eps_after_fusion="keep", fusion_every=1)
    expected = reference_ddim(toy, cond, torch.zeros(1), (1, 2, 8, 8), seed=0, nfe=8)
    torch.testing.assert_close(out.latent, expected, atol=1e-5, rtol=1e-5)


def test_unknown_eps_after_fusion_is_a_user_error(toy):
    with pytest.raises(UserError, match="rederive, keep"):
        run(toy, torch.zeros(1, 2, 8, 8), eps_after_fusion="swap")


def test_renoise_replaces_that_fraction_of_the_direction_with_the_branch_own_noise():
    # z' = alpha' c_bar + sigma' (sqrt(1 - r²) (z - alpha c_bar)/sigma + r xi), xi the row generator's draw
    cond, nfe, r = two_constant_branches(), 5, 0.6
    denoise = ConstantEstimateDenoiser()
    run(denoise, cond, nfe=nfe, fusion_every=1, renoise=r, shared_noise=False)
    noise = BranchNoise(torch.Generator().manual_seed(0), 1, 2, (1, SIDE, SIDE), False, torch.device("cpu"))
    grid = DDIMScheduler.from_config(SCHEDULE)
    grid.set_timesteps(nfe)
    steps = grid.timesteps
    for k in range(nfe - 1):
        xi = noise.randn((1, 2, 1, SIDE, SIDE))[0]
        (alpha, sigma), (alpha_prev, sigma_prev) = alphas_sigmas(steps[k]), alphas_sigmas(steps[k + 1])
        z, c_bar = denoise.inputs[k].view(2, 1, SIDE, SIDE), cond.mean(0)
        direction = (1 - r ** 2) ** 0.5 * (z - alpha * c_bar) / sigma + r * xi
        expected = alpha_prev * c_bar + sigma_prev * direction
        torch.testing.assert_close(denoise.inputs[k + 1].view(2, 1, SIDE, SIDE), expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("renoise", [-0.1, 1.5])
def test_renoise_outside_zero_one_is_refused(toy, renoise):
    with pytest.raises(UserError, match=r"renoise must be in \[0, 1\]"):
        run(toy, torch.zeros(1, 2, 8, 8), renoise=renoise)


def test_eta_with_dpm_solver_is_refused_not_ignored(toy):
    with pytest.raises(UserError, match="eta=0.5 needs sampler.scheduler=ddim"):
        run(toy, torch.zeros(1, 2, 8, 8), scheduler="dpm", eta=0.5)


class RecordingDenoiser:
    """The toy network (its estimate depends on the state), recording each call's (z, t, eps)."""

    def __init__(self, network):
        self.network, self.calls = network, []

    def __call__(self, z, t, cond, dt):
        eps = self.network(z, t, cond, dt)
        self.calls.append((z.clone(), int(t[0]), eps.clone()))
        return eps


def first_order_dpm(z, t, t_next, eps):
    """DPM-Solver++ at first order from state z with data prediction x0 = (z - sigma eps)/alpha."""
    (alpha, sigma), (alpha_next, sigma_next) = alphas_sigmas(t), alphas_sigmas(t_next)
    x0 = (z - sigma * eps) / alpha
    return alpha_next * x0 + sigma_next * (z - alpha * x0) / sigma


@pytest.mark.parametrize("jump", [{"eps_after_fusion": "keep"}, {"renoise": 0.5}])
def test_dpm_solver_restarts_at_first_order_after_a_state_jump(toy, jump):
    # fusion at steps 0 and 3 of 7: the step after each jump (1 and 4) must be first order; step 2 is
    # second order again (its two estimates come from the same trajectory)
    cond = torch.randn(2, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    denoise = RecordingDenoiser(toy)
    with torch.no_grad():
        run(denoise, cond, nfe=7, fusion_every=3, scheduler="dpm", shared_noise=False, **jump)
    calls = denoise.calls
    for k in (1, 4):
        (z, t, eps), (z_next, t_next, _) = calls[k], calls[k + 1]
        torch.testing.assert_close(z_next, first_order_dpm(z, t, t_next, eps), atol=1e-5, rtol=1e-5)
    (z, t, eps), (z_next, t_next, _) = calls[2], calls[3]
    assert (z_next - first_order_dpm(z, t, t_next, eps)).abs().max() > 1e-4
