"""The fused sampler reduces to plain DDIM where it must, and fuses where it should."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from sampling_toys import SCHEDULE, reference_ddim, sampler_cfg

from satdiffmoe.errors import UserError
from satdiffmoe.sampling import BranchInputs, FusedSampler

C, H, W = 2, 8, 8


def branch_inputs(batch=1, branches=1, seed=1, dt=None, valid=None):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(batch, branches, C, H, W, generator=g)
    dt = torch.zeros(batch, branches) if dt is None else torch.as_tensor(dt, dtype=torch.float32)
    valid = torch.ones(batch, branches, dtype=torch.bool) if valid is None else torch.as_tensor(valid)
    return BranchInputs(cond=cond, dt=dt, valid=valid)


def run(denoise, inputs, seed=0, prediction_type="epsilon", **cfg):
    sampler = FusedSampler(denoise, SCHEDULE, prediction_type, sampler_cfg(**cfg))
    return sampler.sample(inputs, (C, H, W), torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("fusion_every", [2, None])
def test_single_branch_equals_plain_ddim(toy, prediction_type, fusion_every):
    inputs = branch_inputs(batch=2, branches=1, dt=[[5.0], [-30.0]])
    out = run(toy, inputs, prediction_type=prediction_type, fusion_every=fusion_every)
    expected = reference_ddim(toy, inputs.cond[:, 0], inputs.dt[:, 0], (2, C, H, W), seed=0, nfe=8,
                              prediction_type=prediction_type)
    torch.testing.assert_close(out.latent, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.image, expected.clamp(-1, 1), atol=1e-5, rtol=1e-5)


def test_fusion_off_is_independent_ddim_per_branch_and_averages_images(toy):
    inputs = branch_inputs(branches=3, dt=[[0.0, 10.0, -50.0]])
    out = run(toy, inputs, fusion_every=0, shared_noise=True, eta=0.0)
    per_branch = [reference_ddim(toy, inputs.cond[:, i], inputs.dt[:, i], (1, C, H, W), seed=0, nfe=8)
                  for i in range(3)]
    for i, expected in enumerate(per_branch):
        torch.testing.assert_close(out.branch_images[:, i], expected.clamp(-1, 1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.image, torch.stack(per_branch).clamp(-1, 1).mean(0), atol=1e-5, rtol=1e-5)


def test_stochastic_ddim_single_branch_matches_reference(toy):
    inputs = branch_inputs(branches=1)
    out = run(toy, inputs, eta=1.0, fusion_every=None)
    expected = reference_ddim(toy, inputs.cond[:, 0], inputs.dt[:, 0], (1, C, H, W), seed=0, nfe=8, eta=1.0)
    torch.testing.assert_close(out.latent, expected, atol=1e-5, rtol=1e-5)


def test_identical_lrs_with_shared_noise_equal_one_branch(toy):
    single = branch_inputs(branches=1, dt=[[7.0]])
    repeated = BranchInputs(cond=single.cond.expand(1, 4, C, H, W).clone(), dt=torch.full((1, 4), 7.0),
                            valid=torch.ones(1, 4, dtype=torch.bool))
    torch.testing.assert_close(run(toy, repeated).image, run(toy, single).image, atol=1e-5, rtol=1e-5)


def test_dpm_solver_single_branch_matches_diffusers_dpm_loop(toy):
    inputs = branch_inputs(branches=1)
    out = run(toy, inputs, scheduler="dpm", nfe=6)
    scheduler = DPMSolverMultistepScheduler.from_config(SCHEDULE, algorithm_type="dpmsolver++",
                                                        final_sigmas_type="zero")
    grid = DDIMScheduler.from_config(SCHEDULE)  # both schedulers sample DDIM's grid for a timestep_spacing
    grid.set_timesteps(6)
    scheduler.set_timesteps(timesteps=grid.timesteps.tolist())
    z = randn_tensor((1, C, H, W), generator=torch.Generator().manual_seed(0))
    for t in scheduler.timesteps:
        z = scheduler.step(toy(z, t.expand(1), inputs.cond[:, 0], inputs.dt[:, 0]), t, z).prev_sample
    torch.testing.assert_close(out.latent, z, atol=1e-4, rtol=1e-4)


def test_padding_branches_are_never_computed_or_fused(toy):
    real = branch_inputs(branches=2, dt=[[0.0, 20.0]])
    cond = torch.cat([real.cond, torch.full((1, 2, C, H, W), float("nan"))], 1)  # NaN would poison any sum
    padded = BranchInputs(cond=cond, dt=torch.tensor([[0.0, 20.0, 0.0, 0.0]]),
                          valid=torch.tensor([[True, True, False, False]]))
    out = run(toy, padded, shared_noise=False)
    torch.testing.assert_close(out.image, run(toy, real, shared_noise=False).image, atol=1e-6, rtol=1e-6)
    assert torch.isfinite(out.uncertainty).all()
    assert (out.branch_images[:, 2:] == 0).all()


def test_chunked_denoiser_calls_give_the_unchunked_result(toy):
    inputs = branch_inputs(batch=2, branches=3, dt=[[0, 5, 9], [1, 2, 3]])
    whole = run(toy, inputs, chunk_size=64, shared_noise=False)
    calls = toy.calls
    chunked = run(toy, inputs, chunk_size=2, shared_noise=False)
    assert toy.calls - calls == 3 * 8  # 6 rows in chunks of 2, 8 steps
    torch.testing.assert_close(chunked.image, whole.image, atol=1e-6, rtol=1e-6)


def test_far_branch_is_ignored_by_time_weighted_consensus(toy):
    near = branch_inputs(branches=3, dt=[[-3.0, 4.0, 10.0]])
    cond = torch.cat([near.cond, torch.randn(1, 1, C, H, W) * 3], 1)
    with_far = BranchInputs(cond=cond, dt=torch.tensor([[-3.0, 4.0, 10.0, 20000.0]]),
                            valid=torch.ones(1, 4, dtype=torch.bool))
    fused = run(toy, with_far, consensus="time_weighted", tau=180.0, fusion_every=1)
    torch.testing.assert_close(fused.image, run(toy, near, consensus="time_weighted", fusion_every=1).image,
                               atol=1e-5, rtol=1e-5)
    mean_fused = run(toy, with_far, consensus="mean", fusion_every=1)
    assert (mean_fused.image - fused.image).abs().max() > 1e-3  # the far branch did matter under `mean`


def test_sixteen_branches_run_and_report_nfe(toy):
    inputs = branch_inputs(branches=16, dt=[list(range(-80, 80, 10))])
    out = run(toy, inputs, nfe=5, chunk_size=8, shared_noise=False)
    assert out.image.shape == (1, C, H, W) and out.branch_images.shape == (1, 16, C, H, W)
    assert out.uncertainty.shape == (1, 1, H, W) and out.nfe == 5
    assert torch.isfinite(out.image).all() and (out.uncertainty > 0).any()


def test_guidance_doubles_nfe_and_combines_conditional_and_unconditional(toy):
    inputs = branch_inputs(branches=1)
    guided = run(toy, inputs, guidance_scale=3.0, fusion_every=None)
    assert guided.nfe == 16

    def combined(z, t, cond, dt):
        uncond = toy(z, t, None, dt)
        return uncond + 3.0 * (toy(z, t, cond, dt) - uncond)

    expected = reference_ddim(combined, inputs.cond[:, 0], inputs.dt[:, 0], (1, C, H, W), seed=0, nfe=8)
    torch.testing.assert_close(guided.latent, expected, atol=1e-5, rtol=1e-5)


def test_scene_without_valid_branch_is_a_user_error(toy):
    with pytest.raises(UserError, match="at least one valid"):
        run(toy, branch_inputs(branches=2, valid=[[False, False]]))
