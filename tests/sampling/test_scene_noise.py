"""A scene's noise is its own (sampling/noise.py): the same output alone, inside a batch, after other
scenes and in another order, and branch k's initial latent does not depend on N. Every random draw is
switched on (DDIM eta, re-noising, DiffusionDrop), so any draw from a shared stream would show."""

from __future__ import annotations

import hashlib

import pytest
import torch
from sampling_toys import SCHEDULE, sampler_cfg

from satdiffmoe.sampling import BranchInputs, FusedSampler
from satdiffmoe.sampling.noise import BranchNoise, rand_tensor, scene_generators, scene_seed

C, H, W = 2, 8, 8
STOCHASTIC = {"eta": 0.5, "renoise": 0.3, "fusion_drop": 0.3, "fusion_every": 2, "shared_noise": False}
KEYS = ["scene-a", "scene-b", "scene-c"]


def scenes(keys, branches=3):
    """Fixed inputs per key, so a scene's inputs are the same wherever it sits in the batch."""
    cond = torch.stack([torch.randn(branches, C, H, W, generator=torch.Generator().manual_seed(scene_seed(0, k)))
                        for k in keys])
    return BranchInputs(cond, torch.zeros(len(keys), branches), torch.ones(len(keys), branches, dtype=torch.bool))


def run(toy, keys, seed=0, **cfg):
    sampler = FusedSampler(toy, SCHEDULE, "epsilon", sampler_cfg(**{**STOCHASTIC, **cfg}))
    return sampler.sample(scenes(keys), (C, H, W), scene_generators(seed, keys))


def test_a_scene_alone_equals_the_scene_inside_a_batch(toy):
    alone = run(toy, ["scene-b"]).latent[0]
    batch = run(toy, KEYS).latent[1]
    torch.testing.assert_close(alone, batch, atol=1e-5, rtol=1e-5)


def test_a_scene_after_other_scenes_and_in_another_order_is_unchanged(toy):
    forward = run(toy, KEYS).latent
    backward = run(toy, KEYS[::-1]).latent
    torch.testing.assert_close(forward, backward.flip(0), atol=1e-5, rtol=1e-5)


def test_another_seed_is_other_noise(toy):
    assert (run(toy, ["scene-b"], seed=0).latent - run(toy, ["scene-b"], seed=1).latent).abs().max() > 1e-2


@pytest.mark.parametrize("shared", [False, True])
def test_branch_k_gets_the_same_initial_latent_at_n2_and_n8(shared):
    def initial(branches):
        noise = BranchNoise(scene_generators(3, KEYS), len(KEYS), branches, (C, H, W), shared, torch.device("cpu"))
        return noise.initial, noise

    two, noise2 = initial(2)
    eight, noise8 = initial(8)
    assert torch.equal(two, eight[:, :2])
    assert shared == torch.equal(eight[:, 0], eight[:, 5])  # shared noise: every branch the same
    # and every later draw of branch k (eta, re-noise, DiffusionDrop) comes from the same stream
    torch.testing.assert_close(noise2.randn((3, 2, C, H, W)), noise8.randn((3, 8, C, H, W))[:, :2])
    torch.testing.assert_close(noise2.rand(), noise8.rand()[:, :2])


def test_scene_seed_is_stable_and_depends_on_seed_and_key():
    assert scene_seed(0, "scene-a") == scene_seed(0, "scene-a")
    assert len({scene_seed(0, "scene-a"), scene_seed(1, "scene-a"), scene_seed(0, "scene-b")}) == 3
    assert 0 <= scene_seed(123, "x") < 2 ** 63
    # a fixed value: the seed must not change across Python runs or machines (hash() is salted per process)
    assert scene_seed(0, "scene-a") == int.from_bytes(hashlib.sha256(b"0/scene-a").digest()[:8], "little") >> 1


def test_uniform_draws_follow_the_generator_not_the_default_stream():
    a = rand_tensor((4,), torch.Generator().manual_seed(5), torch.device("cpu"))
    torch.manual_seed(999)
    b = rand_tensor((4,), torch.Generator().manual_seed(5), torch.device("cpu"))
    assert torch.equal(a, b) and ((a >= 0) & (a < 1)).all()


def test_one_generator_per_scene_is_required_when_a_list_is_given(toy):
    sampler = FusedSampler(toy, SCHEDULE, "epsilon", sampler_cfg())
    with pytest.raises(ValueError, match="2 generators for 3 scenes"):
        sampler.sample(scenes(KEYS), (C, H, W), scene_generators(0, KEYS[:2]))
