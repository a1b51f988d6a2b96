"""Classifier-free guidance on the real task types: one stacked denoiser call, and the unconditional
rows are exactly what the training condition dropout feeds the network."""

from __future__ import annotations

import pytest
import torch
from sampling_toys import scene_batch, tiny_task

from satdiffmoe.pipelines.inputs import SRInputs
from satdiffmoe.sampling import FusedSampler, SamplerConfig

SCALE = 3.0
TASKS = [("satdiffmoe", ("model.metadata_embedding=true",)), ("controlnet", ()), ("diffusionsat", ())]


def two_call_guidance(task):
    """The guided denoiser written out: a conditional call and a call on the training-dropped condition."""
    def denoise(z, t, cond, dt):
        rows = z.shape[0]
        uncond, uncond_dt = task.network.drop_condition(cond, dt, torch.ones(rows, dtype=torch.bool))
        conditional = task.network(z, t, cond, dt)
        unconditional = task.network(z, t, uncond, dt if uncond_dt is None else uncond_dt)
        return unconditional + SCALE * (conditional - unconditional)
    return denoise


def branches(task, batch):
    return task.pipeline.branches(SRInputs.from_batch(batch), task.pipeline.sampler_config())


def sample(sampler, task, batch):
    return sampler.sample(branches(task, batch), task.latent_shape, torch.Generator().manual_seed(0))


@pytest.mark.parametrize("stage, overrides", TASKS, ids=[stage for stage, _ in TASKS])
def test_stacked_guidance_equals_two_calls_on_the_dropped_condition(tiny_pretrained, stage, overrides):
    task, batch = tiny_task(tiny_pretrained, stage, *overrides), scene_batch()
    cfg = {"nfe": 3, "fusion_every": 1, "guidance_scale": SCALE}
    calls = []
    sampler = task.pipeline.fused_sampler(SamplerConfig.from_any(cfg))
    sampler.denoise = lambda z, *rest, _denoise=sampler.denoise: calls.append(z.shape[0]) or _denoise(z, *rest)
    stacked = sample(sampler, task, batch)
    assert len(calls) == 3  # one call per step: conditional and unconditional rows together
    reference = FusedSampler(two_call_guidance(task), task.scheduler_config, task.prediction_type,
                             {**cfg, "guidance_scale": 1.0}, vae=task.vae, latent_scale=task.latent_scale)
    expected = sample(reference, task, batch)
    assert (stacked.image - expected.image).abs().max() < 1e-4
    assert stacked.nfe == 6


def test_guidance_keeps_the_gsd_the_training_dropout_keeps(tiny_pretrained):
    # Training dropout zeroes the LR and forgets Δt but keeps the HR's GSD; the unconditional output
    # under guidance must see the same, not an "unknown" GSD whose embedding was never trained.
    task, batch = tiny_task(tiny_pretrained, "satdiffmoe", "model.metadata_embedding=true"), scene_batch()
    inputs = branches(task, batch)
    cond = {key: value.flatten(0, 1) for key, value in inputs.cond.items()}
    dt = inputs.dt.flatten()
    dropped, dropped_dt = task.network.drop_condition(cond, dt, torch.ones(dt.shape[0], dtype=torch.bool))
    assert torch.equal(dropped["gsd"], cond["gsd"]) and torch.isnan(dropped_dt).all()
    assert (dropped["image"] == 0).all()
    z = torch.randn(dt.shape[0], *task.latent_shape, generator=torch.Generator().manual_seed(0))
    t = torch.full((dt.shape[0],), 50)
    sampler = task.pipeline.fused_sampler(SamplerConfig(guidance_scale=SCALE))
    guided = sampler._denoise_chunk(z, t, cond, dt)
    with torch.no_grad():
        expected = two_call_guidance(task)(z, t, cond, dt)
    torch.testing.assert_close(guided, expected, atol=1e-5, rtol=1e-5)


class InputRecorder:
    """Records the (cond, dt) every call of the network receives."""

    def __init__(self, network):
        self.calls = []
        self.handle = network.register_forward_pre_hook(self)

    def __call__(self, module, args):
        z, t, cond, dt = args[:4]
        self.calls.append((cond, dt))


def _rows(cond, rows):
    if isinstance(cond, dict):
        return {key: value[rows] for key, value in cond.items()}
    return cond[rows]


def _assert_same_condition(trained, sampled):
    if isinstance(trained, dict):
        assert set(trained) == set(sampled)
        for key in trained:
            torch.testing.assert_close(sampled[key], trained[key], equal_nan=True, rtol=0, atol=0, msg=key)
    else:
        torch.testing.assert_close(sampled, trained, equal_nan=True, rtol=0, atol=0)


@pytest.mark.parametrize("stage, overrides", TASKS, ids=[stage for stage, _ in TASKS])
def test_the_unconditional_rows_are_what_the_training_loss_feeds_at_dropout_one(tiny_pretrained, stage, overrides):
    # What the network sees: the training loss with every condition dropped, against the second half of
    # the sampler's stacked guidance call (its unconditional rows), scene for scene.
    task, batch = tiny_task(tiny_pretrained, stage, *overrides), scene_batch()
    recorder = InputRecorder(task.network)
    with torch.no_grad():
        task.diffusion_loss(batch, torch.Generator().manual_seed(0), dropout=1.0)
        trained_cond, trained_dt = recorder.calls[-1]
        inputs = branches(task, batch)
        sampler = task.pipeline.fused_sampler(SamplerConfig(nfe=1, fusion_every=1, guidance_scale=SCALE))
        sampler.sample(inputs, task.latent_shape, torch.Generator().manual_seed(0))
    recorder.handle.remove()
    sampled_cond, sampled_dt = recorder.calls[-1]
    rows = inputs.valid.numel()  # one branch row per (scene, branch); the unconditional copies follow
    first_branch = torch.arange(batch["hr"].shape[0]) * inputs.valid.shape[1] + rows
    _assert_same_condition(trained_cond, _rows(sampled_cond, first_branch))
    if trained_dt is not None:
        torch.testing.assert_close(sampled_dt[first_branch], trained_dt.to(sampled_dt.dtype), equal_nan=True)
