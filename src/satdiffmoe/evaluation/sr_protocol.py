"""The satellite-SR evaluation protocol: spectral, radiometric and LR-consistency scores per image.

Inputs follow `metrics`: images are B×C×H×W in [-1, 1], mapped to [0, 1] (`to_unit`) before any
score; LR stacks are B×N×C×h×w with `lr_valid` (B×N bool) and an optional `lr_mask` (B×N×h×w,
1 = clear pixel), in the output's bands (a multispectral LR's `data.lr_stack.lr_rgb_view`). Every
function returns one float per image (a B tensor), or a dict of them.

* `sam`, `ergas`, `psnr_ratio`: spectral angle, Wald's ERGAS, and WorldStrat's PSNR against bicubic.
* `consistency_l1`, `consistency_sam`, `synthesis`, `correctness`: weight-free versions of the
  opensr-test triad (Aybar et al. 2024, "A comprehensive benchmark for optical remote sensing image
  super-resolution"; github.com/ESAOpenSR/opensr-test, `opensr_test/main.py`, `correctness.py`,
  `config.py`, docs/Metrics). No alignment network, no histogram matching: the systematic errors
  opensr-test harmonises away are reported separately here (cPSNR corrects brightness bias).
* `protocol_metrics`: all of them for one batch, given the upsampled-LR reference.

docs/metrics.md gives each definition, its units and which direction is better.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import (
    error_relative_global_dimensionless_synthesis,
    spectral_angle_mapper,
)

from satdiffmoe.evaluation.metrics import MIN_MSE, to_unit

# torchmetrics' SAM is dot / (|a|·|b|) with no epsilon, so one all-zero pixel vector (a black or
# no-data pixel) gives 0/0 = NaN and poisons the image mean. Adding 1e-8 to every band in float64
# leaves real pixels unchanged (far below the resolution of [0, 1] data) and makes a zero vector a
# neutral grey one: black vs black is 0°, black vs a colour is that colour's angle to grey.
SAM_EPS = 1e-8
# Per-pixel LR→HR distances below this (in [0, 1] units) are treated as this when normalising the
# correctness distances, so a pixel the LR already explains gives finite ratios instead of x/0.
DISTANCE_EPS = 1e-6


# -------------------------------------------------------------------------------------- spectral angle
def _angle_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel spectral angle in degrees between two [0, 1] images (B×C×H×W → B×H×W)."""
    if a.shape[1] < 2:
        raise ValueError(f"the spectral angle needs at least 2 bands, got {a.shape[1]}")
    # float64: acos near 1 loses ~0.02° in float32, so an image against itself would not read 0
    angle = spectral_angle_mapper(a.double() + SAM_EPS, b.double() + SAM_EPS, reduction="none")
    return torch.rad2deg(angle).float()


def sam(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean spectral angle (degrees) between pred and target pixel vectors; 0 = same hue, any brightness."""
    return _angle_map(to_unit(pred), to_unit(target)).mean((1, 2))


# ------------------------------------------------------------------------------------ radiometric
def ergas(pred: torch.Tensor, target: torch.Tensor, ratio: float) -> torch.Tensor:
    """Wald's ERGAS = 100·(h/l)·sqrt(mean_k RMSE_k² / µ_k²), in [0, 1] units; lower is better.

    `ratio` is the scale factor HR size / LR size (e.g. 4). torchmetrics' `ratio` is the same
    number (its formula is 100 / ratio · ...), i.e. 1/(h/l) with h/l the HR/LR pixel-size ratio
    (< 1) of Wald (2000), so it is passed through unchanged. µ_k is the target's band mean: a band
    that is 0 everywhere (all −1 in model units) gives inf.
    """
    return error_relative_global_dimensionless_synthesis(to_unit(pred), to_unit(target), ratio=float(ratio),
                                                         reduction="none")


def _capped_psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mse = ((to_unit(pred) - to_unit(target)) ** 2).mean((1, 2, 3))
    return -10 * torch.log10(mse.clamp_min(MIN_MSE))


def psnr_ratio(pred: torch.Tensor, target: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR(pred, target) / PSNR(reference, target), both in dB with data range 1 (capped at 100 dB).

    WorldStrat (Cornebise et al. 2022) reports PSNR relative to bicubic upsampling; > 1 beats the
    reference. (PROBA-V's challenge score is the inverse, reference / model, lower better.)
    """
    return _capped_psnr(pred, target) / _capped_psnr(reference, target)


# -------------------------------------------------------------------------------- LR consistency
def _lr_terms(pred: torch.Tensor, lr: torch.Tensor, lr_valid: torch.Tensor,
              lr_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(area-downsampled pred B×N×C×h×w, LRs B×N×C×h×w, weights B×N×h×w), all in [0, 1] units."""
    down = F.interpolate(to_unit(pred), size=lr.shape[-2:], mode="area")[:, None].expand_as(lr)
    weights = torch.ones_like(lr[:, :, 0], dtype=torch.float) if lr_mask is None else lr_mask.float()
    weights = weights * lr_valid.float()[:, :, None, None]
    return down, to_unit(lr), weights


def _mean_over_lrs(per_pixel: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Clear-pixel mean of each LR (B×N×h×w), then the mean over LRs with any clear pixel (NaN if none)."""
    count = weights.sum((2, 3))
    per_lr = (per_pixel * weights).sum((2, 3)) / count.clamp_min(1)
    used = (count > 0).float()
    return torch.where(used.sum(1) > 0, (per_lr * used).sum(1) / used.sum(1).clamp_min(1),
                       torch.full_like(per_lr[:, 0], float("nan")))


def consistency_l1(pred: torch.Tensor, lr: torch.Tensor, lr_valid: torch.Tensor,
                   lr_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Reflectance consistency: mean |area-down(SR) − LR| over bands and clear pixels, averaged over valid LRs.

    opensr-test's "reflectance" consistency (default distance l1, SR degraded to the LR grid and
    compared with the LR). Area averaging is our degradation model, as in `metrics.lr_psnr`.
    Lower is better; [0, 1] reflectance units.
    """
    down, lr, weights = _lr_terms(pred, lr, lr_valid, lr_mask)
    return _mean_over_lrs((down - lr).abs().mean(2), weights)


def consistency_sam(pred: torch.Tensor, lr: torch.Tensor, lr_valid: torch.Tensor,
                    lr_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Spectral consistency: spectral angle (degrees) of area-down(SR) vs each LR, as `consistency_l1`.

    opensr-test's "spectral" consistency (distance "sad", spectral angle distance). Lower is better.
    """
    down, lr, weights = _lr_terms(pred, lr, lr_valid, lr_mask)
    angles = _angle_map(down.flatten(0, 1), lr.flatten(0, 1)).view(weights.shape)
    return _mean_over_lrs(angles, weights)


# ---------------------------------------------------------------------------------------- synthesis
def synthesis(pred: torch.Tensor, lr_up: torch.Tensor, lr_size: tuple[int, int] | None = None) -> torch.Tensor:
    """High-frequency detail the SR adds beyond the upsampled LR: mean |d − lowpass(d)|, d = SR − LR_up.

    opensr-test scores synthesis as the L1 between the upsampled LR and the SR after removing the
    SR's systematic error (histogram matching to the HR and spatial alignment; "the larger the
    distance, the better", docs/Properties). Weight- and HR-free, we remove instead the part of the
    difference the LR grid can represent: `lowpass` is the area average over each LR pixel footprint
    (`lr_size`), broadcast back (nearest), so a brightness bias or any LR-scale change, which
    `consistency_*` already measures, adds nothing here. Without `lr_size` only the per-band mean is
    removed. [0, 1] units; 0 = no detail beyond the LR; higher = more detail, right or wrong (read
    it with `correctness`).
    """
    difference = to_unit(pred) - to_unit(lr_up)
    if lr_size is None:
        low = difference.mean((-2, -1), keepdim=True)
    else:
        low = F.interpolate(F.interpolate(difference, size=tuple(lr_size), mode="area"),
                            size=difference.shape[-2:], mode="nearest")
    return (difference - low).abs().mean((1, 2, 3))


# -------------------------------------------------------------------------------------- correctness
CLASSES = ("improvement", "omission", "hallucination")


def correctness(pred: torch.Tensor, target: torch.Tensor, lr_up: torch.Tensor,
                threshold: float | str = "auto", plambda: float = 0.05) -> dict[str, torch.Tensor]:
    """Percentages of evaluated pixels where the SR improves on the LR, omits detail, or hallucinates.

    opensr-test's correctness (`Metrics.correctness`, `correctness.py`), with per-pixel L1 over bands
    in [0, 1] units as the distance:

    * d_ref = |LR_up − HR|, d_im = |SR − HR|, d_om = |SR − LR_up| (mean over bands, per pixel);
    * evaluated pixels: any of the three > threshold; "auto" is opensr-test's default "auto75", the
      75th-percentile (kthvalue) of d_ref in the image; flat pixels where LR, SR and HR agree say nothing;
    * x_im = d_im / d_ref, x_om = d_om / d_ref (d_ref clamped at DISTANCE_EPS), H = x_im + x_om − 1;
      improvement score  x_im + x_om·(1 − exp(−λH)), omission score  x_om + x_im·(1 − exp(−λH)),
      hallucination score  exp(−λ·x_im·x_om), λ = 0.05 (`config.py` im/om/ha_score);
    * each pixel takes the class with the lowest score (opensr-test's argmax of softmin, which does
      not depend on the temperature; exact ties go to improvement, then omission);
    * "percent" normalisation: 100 · class count / evaluated count; NaN where nothing is evaluated.

    SR = HR gives 100 % improvement, SR = LR_up 100 % omission, SR far from both hallucination.
    Not done here: opensr-test's 16-px border crop and the SR harmonisation (histogram matching and
    alignment to the HR).
    """
    sr, hr, lr = to_unit(pred), to_unit(target), to_unit(lr_up)
    d_ref = (lr - hr).abs().mean(1).flatten(1)
    d_im = (sr - hr).abs().mean(1).flatten(1)
    d_om = (sr - lr).abs().mean(1).flatten(1)
    if threshold == "auto":
        k = max(1, int(0.75 * d_ref.shape[1]))
        limit = d_ref.kthvalue(k, dim=1, keepdim=True).values
    else:
        limit = torch.full_like(d_ref[:, :1], float(threshold))
    evaluated = (d_ref > limit) | (d_im > limit) | (d_om > limit)
    reference = d_ref.clamp_min(DISTANCE_EPS)
    x_im, x_om = d_im / reference, d_om / reference
    damping = 1 - torch.exp(-plambda * (x_im + x_om - 1))
    scores = torch.stack([x_im + x_om * damping, x_om + x_im * damping, torch.exp(-plambda * x_im * x_om)])
    label = scores.argmin(0)
    count = evaluated.sum(1).float()
    result = {}
    for index, name in enumerate(CLASSES):
        share = 100 * ((label == index) & evaluated).sum(1).float() / count.clamp_min(1)
        result[name] = torch.where(count > 0, share, torch.full_like(share, float("nan")))
    return result


# ------------------------------------------------------------------------------------------ a batch
PROTOCOL = ("sam", "ergas", "psnr_ratio", "consistency_l1", "consistency_sam", "synthesis") + CLASSES


def protocol_metrics(pred: torch.Tensor, batch: dict[str, Any], reference: torch.Tensor,
                     names: Collection[str] = PROTOCOL) -> dict[str, torch.Tensor]:
    """The protocol scores `names` for one batch (keys hr, lr, lr_valid, optional lr_mask).

    `reference` is the upsampled LR (the metric suite passes `data.lr_stack.mean_bicubic_of(...)`); it
    is the PSNR-ratio baseline and LR_up of synthesis and correctness. The ERGAS ratio is SR width /
    LR width. Only what `names` asks for is computed, so the LR-only scores (consistency, synthesis)
    need no `hr` in the batch. Spectral angles need ≥ 2 bands: single-band data gets NaN for sam and
    consistency_sam.
    """
    hr, lr, valid, mask = batch.get("hr"), batch.get("lr"), batch.get("lr_valid"), batch.get("lr_mask")
    spectral = pred.shape[1] >= 2
    nan = torch.full((pred.shape[0],), float("nan"), device=pred.device)
    scores = {
        "sam": lambda: sam(pred, hr) if spectral else nan,
        "ergas": lambda: ergas(pred, hr, ratio=pred.shape[-1] / lr.shape[-1]),
        "psnr_ratio": lambda: psnr_ratio(pred, hr, reference),
        "consistency_l1": lambda: consistency_l1(pred, lr, valid.bool(), mask),
        "consistency_sam": lambda: consistency_sam(pred, lr, valid.bool(), mask) if spectral else nan,
        "synthesis": lambda: synthesis(pred, reference, lr_size=tuple(lr.shape[-2:])),
    }
    result = {name: scores[name]() for name in names if name in scores}
    if any(name in CLASSES for name in names):
        shares = correctness(pred, hr, reference)
        result.update({name: shares[name] for name in CLASSES if name in names})
    return result
