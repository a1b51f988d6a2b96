"""`MetricSuite`: every metric of the catalog computed on one batch of outputs, and on the whole set.

`evaluate` (through the `Evaluator`) and `score` (anybody's images) share this class, so a metric
means the same thing wherever it is printed. A batch is a dict with the output's comparison data:

    hr          B×C×H×W   the HR target in [-1, 1]                (absent: fidelity metrics unavailable)
    lr          B×N×C×h×w the input LRs in the output's bands, lr_valid B×N, lr_mask B×N×h×w optional (absent:
                          LR metrics unavailable); a multispectral LR goes through `data.lr_stack.lr_rgb_view` first
    hr_mask     B×H×W     optional validity of HR pixels (cPSNR, cSSIM)

    suite = MetricSuite(cfg.eval)
    reasons = suite.unavailable(channels=3, size=64, has_hr=True, has_lr=True, has_uncertainty=True)
    values = suite.per_image(batch, output, uncertainty, reasons)     # name -> B tensor
    scores = suite.set_level(outputs, targets, reasons)               # swd, fid, kid: name -> entry

A metric that cannot run is reported with its reason, never as a number.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..data.lr_stack import mean_bicubic_of
from ..errors import UserError
from . import calibration, sr_protocol
from . import metrics as M
from .catalog import METRICS

# what each metric compares the output with (beyond the output itself)
NEEDS_HR = {"psnr", "ssim", "cpsnr", "cssim", "lpips", "fid", "kid", "swd", "sam", "ergas", "psnr_ratio",
            "improvement", "omission", "hallucination", "unc_spearman", "ause"}
NEEDS_LR = {"lr_psnr", "psnr_ratio", "ergas", "consistency_l1", "consistency_sam", "synthesis",
            "improvement", "omission", "hallucination"}
NEEDS_UNCERTAINTY = {"unc_spearman", "ause"}
NEEDS_BANDS = {"sam", "consistency_sam"}  # spectral angles need at least 2 bands


class MetricSuite:
    def __init__(self, eval_cfg: Any):
        unknown = [m for m in eval_cfg.metrics if m not in METRICS]
        if unknown:
            raise UserError(f"unknown eval.metrics {unknown}; choose from {', '.join(METRICS)}")
        self.metrics = list(eval_cfg.metrics)
        self.lpips_weights, self.inception_weights = eval_cfg.lpips_weights, eval_cfg.inception_weights
        self._lpips: torch.nn.Module | None = None
        self._inception: torch.nn.Module | None = None
        self._real_features: dict[tuple, torch.Tensor] = {}  # the HR set's Inception features, by set

    # ------------------------------------------------------------------------------------ availability
    def unavailable(self, channels: int, size: int | None = None, has_hr: bool = True, has_lr: bool = True,
                    has_uncertainty: bool = True) -> dict[str, str]:
        """Why each requested metric cannot run on these inputs; the others can."""
        reasons: dict[str, str] = {}
        for name in self.metrics:
            if name in NEEDS_HR and not has_hr:
                reasons[name] = "needs the HR reference"
            elif name in NEEDS_LR and not has_lr:
                reasons[name] = "needs the input LR images"
            elif name in NEEDS_UNCERTAINTY and not has_uncertainty:
                reasons[name] = "the method has no uncertainty map"
            elif name in NEEDS_BANDS and channels < 2:
                reasons[name] = f"a spectral angle needs at least 2 bands, got {channels}"
            elif name == "lpips" and (reason := M.lpips_unavailable(self.lpips_weights, channels, size)):
                reasons[name] = reason
            elif name in ("fid", "kid") and (reason := M.inception_unavailable(self.inception_weights, channels)):
                reasons[name] = reason
        return reasons

    # --------------------------------------------------------------------------------------- per image
    def lpips_network(self) -> torch.nn.Module:
        if self._lpips is None:
            self._lpips = M.load_lpips(self.lpips_weights)
        return self._lpips

    def per_image(self, batch: dict[str, Any], image: torch.Tensor, uncertainty: torch.Tensor | None,
                  unavailable: dict[str, str]) -> dict[str, torch.Tensor]:
        """Every requested per-image metric that can run, name -> B values (NaN = undefined here)."""
        wanted = [m for m in self.metrics if METRICS[m].per_image and m not in unavailable]
        hr, lr = batch.get("hr"), batch.get("lr")
        if lr is not None and lr.shape[2] != image.shape[1]:
            raise ValueError(f"the LR has {lr.shape[2]} bands but the output {image.shape[1]}; compare the LR's bands "
                             "that observe the output's (data.lr_stack.lr_rgb_view with data.lr_rgb)")
        device = (hr if hr is not None else lr).device
        image = image.float().to(device)
        values: dict[str, torch.Tensor] = {}
        reference = None
        if lr is not None:  # the protocol's upsampled LR: the cloud-masked mean of the bicubic LRs
            reference = mean_bicubic_of(lr, batch["lr_valid"], batch.get("lr_mask"), tuple(image.shape[-2:]))
        for name in wanted:
            if name in ("psnr", "ssim"):
                values[name] = M.PER_IMAGE[name](image, hr)
            elif name in ("cpsnr", "cssim"):
                values[name] = M.PER_IMAGE[name](image, hr, batch.get("hr_mask"))
            elif name == "lr_psnr":
                values[name] = M.lr_psnr(image, lr, batch["lr_valid"], batch.get("lr_mask"))
            elif name == "lpips":
                values[name] = M.lpips(image, hr, self.lpips_network())
        protocol = [m for m in wanted if m in sr_protocol.PROTOCOL]
        if protocol:
            values.update(sr_protocol.protocol_metrics(image, batch, reference, protocol))
        if uncertainty is not None and any(m in wanted for m in NEEDS_UNCERTAINTY):
            error, uncertainty = absolute_error(image, hr), uncertainty.float().to(device)
            if "unc_spearman" in wanted:
                values["unc_spearman"] = calibration.spearman(uncertainty, error)
            if "ause" in wanted:
                # a constant map (a single branch has no spread) ranks nothing: no AUSE, not the area
                # of an arbitrary pixel order
                ranks = calibration.ranks_anything(uncertainty)
                values["ause"] = torch.where(ranks, calibration.ause(uncertainty, error),
                                             torch.full_like(ranks, float("nan"), dtype=torch.float))
        return values

    # --------------------------------------------------------------------------------------- set level
    def set_level(self, outputs: torch.Tensor, targets: torch.Tensor,
                  unavailable: dict[str, str]) -> dict[str, dict[str, Any]]:
        """swd, fid, kid over the whole set (N×C×H×W each) -> summary entries."""
        results: dict[str, Any] = {}
        if "swd" in self.metrics and "swd" not in unavailable:
            results["swd"] = {"mean": M.sliced_wasserstein(targets, outputs), "n": len(outputs), "set_level": True}
        inception = [m for m in ("fid", "kid") if m in self.metrics and m not in unavailable]
        if inception and len(outputs) < 2:
            results.update({m: {"unavailable": "needs at least 2 images"} for m in inception})
        elif inception:
            if self._inception is None:
                self._inception = M.inception_features(self.inception_weights)
            # every method is compared with the same HR set: its features are computed once (and cached
            # on disk across processes: the quickstart's evaluations and sweep trials share them)
            key = (tuple(targets.shape), float(targets.double().sum()), float(targets.double().square().sum()))
            if key not in self._real_features:
                self._real_features[key] = M.reference_set_features(targets, self._inception)
            scores = M.inception_scores(targets, outputs, self._inception, inception, self._real_features[key])
            for name in inception:
                results[name] = {"mean": scores[name], "n": len(outputs), "set_level": True}
            if "kid" in results:  # KID's spread over random subsets: small test sets make it wide
                results["kid"]["std"] = scores["kid_std"]
        return results


def absolute_error(image: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """B×1×H×W mean over bands of |image − hr| in [0, 1] units (what an uncertainty map should predict)."""
    return (M.to_unit(image.to(hr.device)) - M.to_unit(hr)).abs().mean(1, keepdim=True)


def finite_or_none(value: torch.Tensor | float) -> float | None:
    """A NaN score (e.g. the rank correlation of a constant map) is a missing value, not a number."""
    value = float(value)
    return value if math.isfinite(value) else None
