"""Facts about an LR stack that every method and reference uses, each coded once.

* `time_order`: the LRs of each scene by |Δt| (nearest in time first), unknown Δt after every known
  one, padding last, ties in acquisition order.
* `nearest_in_time`: the first of that order (the ControlNet baseline's input, the bicubic reference).
* `bicubic_upsample`: LR -> HR size, the pixel-space input of the latent condition and the references.
* `mean_bicubic_of`: the cloud-masked mean of the bicubic-upsampled LRs.
* `bicubic_spread_of`: their per-pixel std across dates (how much the LR stack disagrees).
* `lr_rgb_view`: a batch whose LRs hold only the bands that observe the HR's, in HR band order
  (multispectral LR, RGB HR: `data.lr_rgb`), for whatever compares an LR with an HR-band image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def time_order(dt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """B×N indices: valid LRs by |Δt| (NaN = unknown ranks after every known one), padding last."""
    distance = dt.abs().float().nan_to_num(nan=torch.finfo(torch.float32).max)
    if valid is not None:
        distance = torch.where(valid.bool(), distance, torch.full_like(distance, float("inf")))
    return distance.argsort(dim=1, stable=True)


def nearest_in_time(dt: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """B indices of the valid LR with the smallest |Δt| (the first valid one when every Δt is unknown)."""
    return time_order(dt, valid)[:, 0]


def bicubic_upsample(lr: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bicubic LR rows (R×C×h×w in [-1, 1]) -> R×C×H×W, clamped to [-1, 1] (bicubic overshoots)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    return F.interpolate(lr.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def mean_bicubic_of(lr: torch.Tensor, lr_valid: torch.Tensor, lr_mask: torch.Tensor | None,
                    size: tuple) -> torch.Tensor:
    """The cloud-masked mean of the bicubic-upsampled LRs (B×N×C×h×w) at `size` (H, W); equal
    weights where every LR of a pixel is masked."""
    valid = lr_valid.bool()
    batch_size, branches = valid.shape
    upsampled = bicubic_upsample(lr.flatten(0, 1), size).view(batch_size, branches, lr.shape[2], *size)
    mask = torch.ones_like(lr[:, :, 0]) if lr_mask is None else lr_mask.float()
    weights = F.interpolate(mask, size=size, mode="nearest")[:, :, None] * valid[:, :, None, None, None].float()
    equal = valid[:, :, None, None, None].float().expand_as(weights)
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, equal)
    return (weights * upsampled).sum(1) / weights.sum(1)


def bicubic_spread_of(lr: torch.Tensor, lr_valid: torch.Tensor, size: tuple) -> torch.Tensor:
    """B×1×H×W: the per-pixel standard deviation (over dates, ddof 0) of the valid bicubic-upsampled
    LRs (B×N×C×h×w), averaged over bands, in [0, 1] image units; 0 where a scene has one valid LR."""
    valid = lr_valid.bool()
    batch_size, dates = valid.shape
    upsampled = bicubic_upsample(lr.flatten(0, 1), size).view(batch_size, dates, lr.shape[2], *size) / 2
    weights = valid[:, :, None, None, None].to(upsampled.dtype)
    count = weights.sum(1).clamp_min(1)
    mean = (upsampled * weights).sum(1) / count
    variance = ((upsampled - mean[:, None]) ** 2 * weights).sum(1) / count
    return variance.sqrt().mean(1, keepdim=True)


def lr_band_count(data_cfg: Any) -> int:
    """Bands of the records' LR images: `data.lr_channels`, or `data.channels` when that is null."""
    lr_channels = getattr(data_cfg, "lr_channels", None)  # absent in configs stored before the key existed
    return int(data_cfg.channels if lr_channels is None else lr_channels)


def lr_rgb_view(batch: dict[str, Any], lr_rgb: Sequence[int] | None) -> dict[str, Any]:
    """`batch` with `lr` (B×N×C_lr×h×w) replaced by its bands `lr_rgb`, in that order (B×N×C×h×w).

    `lr_rgb[c]` is the LR band that observes HR band c (`data.lr_rgb`, e.g. [3, 2, 1] for Sentinel-2
    B4, B3, B2 of 13 bands). None returns `batch` itself: LR and HR share their bands. Every other
    key is shared with `batch`, not copied.
    """
    if lr_rgb is None:
        return batch
    lr = batch["lr"]
    index = [int(i) for i in lr_rgb]
    if any(not 0 <= i < lr.shape[2] for i in index):
        raise ValueError(f"lr_rgb={index} selects bands the LR stack does not have ({lr.shape[2]} bands)")
    return dict(batch, lr=lr[:, :, index])
