"""The registration-tolerant loss (-cPSNR: best over shifts, brightness corrected) and that it trains."""

import pytest
import torch
import torch.nn.functional as F
from baseline_toys import scene_batch
from regression_toys import REGRESSION_STAGES, fit, regression_config

from satdiffmoe.evaluation.metrics import cpsnr
from satdiffmoe.training import task_class
from satdiffmoe.training.regression import registration_tolerant_loss


@pytest.fixture
def hr_and_output():
    g = torch.Generator().manual_seed(0)
    hr = F.interpolate(torch.rand(2, 3, 8, 8, generator=g) * 2 - 1, size=(32, 32), mode="bicubic").clamp(-1, 1)
    return hr, (hr + 0.1 * torch.randn(hr.shape, generator=g)).clamp(-1, 1)


def test_an_output_shifted_by_one_pixel_scores_the_same(hr_and_output):
    hr, output = hr_and_output
    shifted = torch.roll(output, shifts=(1, -1), dims=(-2, -1))
    loss = registration_tolerant_loss(output, hr, max_shift=3)
    assert float(registration_tolerant_loss(shifted, hr, max_shift=3)) == pytest.approx(float(loss), abs=1e-5)
    assert F.mse_loss(shifted, hr) > 1.5 * F.mse_loss(output, hr)  # a plain MSE would punish the shift


def test_a_brightness_offset_scores_the_same(hr_and_output):
    hr, output = hr_and_output
    loss = registration_tolerant_loss(output, hr, max_shift=3)
    assert float(registration_tolerant_loss(output + 0.2, hr, max_shift=3)) == pytest.approx(float(loss), abs=1e-5)


def test_the_loss_is_minus_the_cpsnr_of_evaluation(hr_and_output):
    hr, output = hr_and_output
    mask = torch.ones(2, 32, 32)
    mask[:, :4] = 0
    loss = registration_tolerant_loss(output, hr, mask, max_shift=2)
    assert float(loss) == pytest.approx(-float(cpsnr(output, hr, mask, max_shift=2).mean()), abs=1e-4)


def test_the_loss_has_gradients_outside_the_image_range(hr_and_output):
    hr, _ = hr_and_output
    output = (hr * 1.5).requires_grad_()  # partly outside [-1, 1]: a clamp would stop these gradients
    registration_tolerant_loss(output, hr).backward()
    assert output.grad[output.detach().abs() > 1].abs().sum() > 0


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
def test_training_lowers_the_loss_on_a_tiny_overfit_set(stage):
    torch.manual_seed(0)
    task = task_class(stage)(regression_config(stage))
    batch = scene_batch(scenes=4, lrs=3, valid_lrs=[1, 2, 3, 3])
    with torch.no_grad():
        before = float(task.loss(task.predict(batch), batch))
    fit(task, batch, steps=30)
    with torch.no_grad():
        after = float(task.loss(task.predict(batch), batch))
    assert after < before - 0.3, (before, after)  # dB of cPSNR (noise HR: little beyond bicubic to learn)
