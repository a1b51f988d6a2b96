"""SRCNN (Dong et al. 2016, "Image Super-Resolution Using Deep Convolutional Networks"), as a plain
network: one B×C×h×w LR image -> B×C×H×W.

The 9-5-5 layout of the paper on the bicubic-upsampled LR: patch extraction (9×9, `features`),
non-linear mapping (5×5, `features`/2), reconstruction (5×5, bands). Where this differs from the
paper: the network predicts the residual over the bicubic input (as VDSR does), which a short
training run needs, and the convolutions are zero-padded so the output keeps the HR size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SRCNN(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 64, scale: int = 4):
        super().__init__()
        self.config = {"in_channels": in_channels, "features": features, "scale": scale}
        self.scale = scale
        hidden = max(1, features // 2)
        self.layers = nn.Sequential(
            nn.Conv2d(in_channels, features, 9, padding=4), nn.ReLU(),
            nn.Conv2d(features, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv2d(hidden, in_channels, 5, padding=2))

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """lr B×C×h×w -> B×C×(scale·h)×(scale·w)."""
        size = (lr.shape[-2] * self.scale, lr.shape[-1] * self.scale)
        upsampled = F.interpolate(lr, size=size, mode="bicubic", align_corners=False)
        return upsampled + self.layers(upsampled)
