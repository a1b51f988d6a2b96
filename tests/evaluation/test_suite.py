"""MetricSuite: what each metric needs, and calibration metrics that refuse a map that ranks nothing."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf

from satdiffmoe.config.schema import EvalConfig
from satdiffmoe.evaluation.suite import MetricSuite


def _suite(*metrics: str) -> MetricSuite:
    cfg = OmegaConf.structured(EvalConfig)
    cfg.metrics = list(metrics)
    return MetricSuite(cfg)


def test_a_constant_uncertainty_map_has_no_ause_and_no_rank_correlation():
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    image = (hr + 0.2 * torch.randn(hr.shape, generator=g)).clamp(-1, 1)
    error_like = (image - hr).abs().mean(1, keepdim=True)
    uncertainty = torch.stack([error_like[0], torch.zeros_like(error_like[1])])  # scene 1: one branch, no spread
    values = _suite("unc_spearman", "ause").per_image({"hr": hr}, image, uncertainty, {})
    assert values["ause"][0].item() < 1e-6 and math.isnan(values["ause"][1].item())
    assert values["unc_spearman"][0].item() > 0.99 and math.isnan(values["unc_spearman"][1].item())


def test_unavailable_names_what_each_metric_needs():
    suite = _suite("psnr", "consistency_l1", "ause", "sam")
    reasons = suite.unavailable(channels=1, size=64, has_hr=False, has_lr=True, has_uncertainty=True)
    assert reasons == {"psnr": "needs the HR reference", "ause": "needs the HR reference",
                       "sam": "needs the HR reference"}
    reasons = suite.unavailable(channels=1, size=64, has_hr=True, has_lr=False, has_uncertainty=False)
    assert reasons["consistency_l1"] == "needs the input LR images"
    assert reasons["ause"] == "the method has no uncertainty map"
    assert reasons["sam"].startswith("a spectral angle needs at least 2 bands")
