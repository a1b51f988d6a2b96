"""Pixel-space back-projection of the LR error (sampling/backprojection.py, `sampler.backprojection`)."""

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from satdiffmoe.sampling.backprojection import back_project
from satdiffmoe.sampling.config import SamplerConfig

sys.path.insert(0, str(Path(__file__).parent))


def lr_error(image, lr):
    return (F.interpolate(image, size=lr.shape[-2:], mode="area") - lr[:, 0]).abs().mean().item()


def scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(2, 3, 16, 16, generator=g) * 1.6 - 0.8
    lr = torch.rand(2, 1, 3, 4, 4, generator=g) * 1.6 - 0.8
    return image, lr, torch.ones(2, 1, dtype=torch.bool)


def test_each_step_brings_the_output_closer_to_the_lr():
    image, lr, observed = scene()
    errors = [lr_error(back_project(image, lr, observed, None, steps), lr) for steps in (0, 1, 3, 10)]
    # bicubic up, box down: smooth errors go in a step or two, the LR Nyquist pattern of random LRs slowly
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[3] < 0.15 * errors[0]
    assert torch.equal(back_project(image, lr, observed, None, 0), image)


def test_an_output_consistent_with_the_lr_is_left_as_it_is():
    _, lr, observed = scene()
    image = F.interpolate(lr[:, 0], scale_factor=4, mode="nearest")  # its box-filtered LR is the LR itself
    torch.testing.assert_close(back_project(image, lr, observed, None, 3), image)


def test_masked_and_unobserved_lrs_change_nothing():
    image, lr, observed = scene()
    cloudy = torch.zeros(2, 1, 4, 4)
    assert torch.equal(back_project(image, lr, observed, cloudy, 3), image)
    garbage = torch.cat([lr, torch.full_like(lr, 0.9)], 1)
    only_first = torch.tensor([[True, False], [True, False]])
    torch.testing.assert_close(back_project(image, garbage, only_first, None, 3),
                               back_project(image, lr, observed, None, 3))


def test_two_lrs_pull_towards_their_mean():
    image, lr, _ = scene()
    other = scene(seed=1)[1]
    both = back_project(image, torch.cat([lr, other], 1), torch.ones(2, 2, dtype=torch.bool), None, 30)
    mean = (lr + other) / 2
    assert lr_error(both, mean) < 0.1 * lr_error(image, mean)


def test_negative_steps_are_refused():
    with pytest.raises(ValueError, match="sampler.backprojection must be >= 0"):
        SamplerConfig(backprojection=-1).check()


def test_the_pipeline_applies_it_to_its_output(tiny_ckpt):
    from satdiffmoe.training.checkpoints import load_task

    pipe = load_task(tiny_ckpt[0]).pipeline
    lr = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)) * 1.6 - 0.8
    plain = pipe(lr, [1.0, -3.0], generator=torch.Generator().manual_seed(1)).image
    projected = pipe(lr, [1.0, -3.0], backprojection=5, generator=torch.Generator().manual_seed(1)).image
    expected = back_project(plain, lr[None], torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2, 4, 4), 5)
    torch.testing.assert_close(projected, expected)
