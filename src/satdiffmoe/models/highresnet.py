"""HighRes-net (Deudon et al. 2020, "HighRes-net: Recursive Fusion for Multi-Frame Super-Resolution of
Satellite Imagery"), as a plain network: B×N LR frames + validity -> one B×C×H×W image.

* Encode: every LR frame is stacked with the scene's reference frame (the per-pixel median of its
  valid frames) and encoded by a shared conv net into a feature map (the paper's "shared
  representation": the reference tells the encoder what is common, the frame what differs).
* Fuse: pairs of codes are fused by one residual block with weights shared across levels, halving
  the number of codes until one is left. The frame count is padded to a power of two; a padded
  partner contributes nothing: fused = alice + alpha_bob · g(alice, bob), alpha = 0 on padding (the
  paper's masking), so padding frames never change the output.
* Decode: a transposed convolution with stride = scale, then a 1×1 convolution to the bands.

Where this differs from the paper: the bicubic-upsampled reference is added to the decoded image
(a global residual). The registration-tolerant loss is blind to a per-image brightness offset, so a
from-scratch decoder has nothing that anchors its output level; the residual gives it the LR's.
ShiftNet (the paper's optional registration network) is not included.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__()
        pad = kernel_size // 2
        self.block = nn.Sequential(nn.Conv2d(channels, channels, kernel_size, padding=pad), nn.PReLU(),
                                   nn.Conv2d(channels, channels, kernel_size, padding=pad), nn.PReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def valid_first(values: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reorder dim 1 so every scene's valid frames come first, in their given order."""
    order = (~valid).to(torch.int8).argsort(dim=1, stable=True)
    index = order.view(*order.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index), valid.gather(1, order)


def median_reference(lr: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """B×C×h×w per-pixel median over the valid frames (the lower median for an even count)."""
    masked = torch.where(valid[:, :, None, None, None], lr, torch.full_like(lr, float("nan")))
    return masked.nanmedian(dim=1).values.nan_to_num(0.0)


class HighResNet(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 64, blocks: int = 2, scale: int = 4):
        super().__init__()
        self.config = {"in_channels": in_channels, "features": features, "blocks": blocks, "scale": scale}
        self.scale = scale
        self.encode = nn.Sequential(
            nn.Conv2d(2 * in_channels, features, 3, padding=1), nn.PReLU(),
            *[ResidualBlock(features) for _ in range(blocks)],
            nn.Conv2d(features, features, 3, padding=1))
        self.fuse = nn.Sequential(ResidualBlock(2 * features), nn.Conv2d(2 * features, features, 3, padding=1),
                                  nn.PReLU())
        self.decode = nn.Sequential(nn.ConvTranspose2d(features, features, scale, stride=scale), nn.PReLU(),
                                    nn.Conv2d(features, in_channels, 1))

    def forward(self, lr: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """lr B×N×C×h×w, valid B×N (at least one valid frame per scene) -> B×C×(scale·h)×(scale·w)."""
        lr, valid = valid_first(lr, valid)
        count = max(1, int(valid.sum(1).max()))  # slots after the last valid frame of every scene: dropped
        slots = 1 << (count - 1).bit_length()  # the next power of two
        lr, valid = lr[:, :count], valid[:, :count]
        if slots > count:
            lr = torch.cat([lr, lr.new_zeros(lr.shape[0], slots - count, *lr.shape[2:])], dim=1)
            valid = torch.cat([valid, valid.new_zeros(valid.shape[0], slots - count)], dim=1)
        lr = torch.where(valid[:, :, None, None, None], lr, torch.zeros_like(lr))  # padding may hold anything
        reference = median_reference(lr, valid)
        scenes = lr.shape[0]
        pairs = torch.cat([lr, reference[:, None].expand_as(lr)], dim=2)
        codes = self.encode(pairs.flatten(0, 1)).unflatten(0, (scenes, slots))
        alpha = valid.to(codes.dtype)[:, :, None, None, None]
        while codes.shape[1] > 1:
            half = codes.shape[1] // 2
            alice, bob = codes[:, :half], codes[:, half:]
            fused = self.fuse(torch.cat([alice, bob], dim=2).flatten(0, 1)).unflatten(0, (scenes, half))
            codes = alice + alpha[:, half:] * fused
            alpha = alpha[:, :half]
        size = (reference.shape[-2] * self.scale, reference.shape[-1] * self.scale)
        upsampled = F.interpolate(reference, size=size, mode="bicubic", align_corners=False)
        return self.decode(codes[:, 0]) + upsampled
