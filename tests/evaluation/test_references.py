"""The non-generative references pick and average LRs as documented."""

import torch

from satdiffmoe.evaluation.references import bicubic_nearest, mean_bicubic


def batch(dt, valid=None, mask=None):
    lr = torch.stack([torch.full((3, 4, 4), v) for v in (-0.5, 0.0, 0.5)])[None]
    return {"lr": lr, "hr": torch.zeros(1, 3, 16, 16), "dt": torch.tensor([dt]),
            "lr_valid": torch.tensor([valid or [True, True, True]]),
            "lr_mask": torch.ones(1, 3, 4, 4) if mask is None else mask}


def test_bicubic_nearest_uses_the_lr_closest_in_time():
    out = bicubic_nearest(batch([-40.0, 3.0, -12.0]))
    assert out.shape == (1, 3, 16, 16)
    torch.testing.assert_close(out, torch.zeros(1, 3, 16, 16))  # the Δt = 3 LR is the 0.0 image


def test_bicubic_nearest_skips_padding_and_unknown_dt():
    out = bicubic_nearest(batch([float("nan"), 0.0, 50.0], valid=[True, False, True]))
    torch.testing.assert_close(out, torch.full((1, 3, 16, 16), 0.5))
    out = bicubic_nearest(batch([float("nan")] * 3))
    torch.testing.assert_close(out, torch.full((1, 3, 16, 16), -0.5))


def test_mean_bicubic_is_the_cloud_masked_mean():
    torch.testing.assert_close(mean_bicubic(batch([0.0] * 3)), torch.zeros(1, 3, 16, 16))
    mask = torch.ones(1, 3, 4, 4)
    mask[0, 0, :2] = 0  # the -0.5 LR is cloudy on the top half
    out = mean_bicubic(batch([0.0] * 3, mask=mask))
    torch.testing.assert_close(out[..., :8, :], torch.full((1, 3, 8, 16), 0.25))
    torch.testing.assert_close(out[..., 8:, :], torch.zeros(1, 3, 8, 16))
