"""RAMS (Salvetti et al. 2020, "Multi-Image Super Resolution of Remotely Sensed Images Using Residual
Attention Deep Neural Networks"), as a plain network: B×T×C×h×w frames -> one B×C×H×W image.

The stack is a 3D volume (bands as channels, frames as depth) and two branches are added:

* Main branch (3D): a 3×3×3 convolution, `blocks` residual feature-attention blocks (RFAB: conv,
  ReLU, conv, then a squeeze-and-excitation gate over the feature channels computed from the whole
  spatio-temporal volume), a long skip, then temporal reduction blocks (RFAB + a 3×3×3 convolution
  without temporal padding, T -> T - 2) until one or two frames are left, and a last 3D convolution
  over the remaining frames to C·scale² channels, pixel-shuffled to HR.
* Global residual branch (2D): the T frames stacked as channels, a residual temporal-attention block
  (RTAB, the 2D twin of the RFAB, whose gate weighs the frames' features), a convolution to
  C·scale², pixel-shuffled.

T is fixed at construction (`frames`); the task picks or pads the frames (training/rams.py).
Where this differs from the paper: zero spatial padding instead of reflection padding, and no weight
normalisation; any T >= 1 (the paper uses T = 9, where the reductions end at exactly one frame).
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureAttention(nn.Module):
    """Squeeze-and-excitation gate over the channels of a 2D or 3D feature map."""

    def __init__(self, channels: int, reduction: int, dims: int):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(conv(channels, hidden, 1), nn.ReLU(), conv(hidden, channels, 1), nn.Sigmoid())
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=tuple(range(2, 2 + self.dims)), keepdim=True)
        return x * self.gate(pooled)


class ResidualAttentionBlock(nn.Module):
    """RFAB (dims=3) / RTAB (dims=2): x + attention(conv(relu(conv(x))))."""

    def __init__(self, channels: int, reduction: int, dims: int):
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        self.body = nn.Sequential(conv(channels, channels, 3, padding=1), nn.ReLU(),
                                  conv(channels, channels, 3, padding=1))
        self.attention = FeatureAttention(channels, reduction, dims)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(self.body(x))


class RAMS(nn.Module):
    def __init__(self, in_channels: int = 3, features: int = 32, blocks: int = 12, frames: int = 9, scale: int = 4,
                 reduction: int = 8):
        super().__init__()
        self.config = {"in_channels": in_channels, "features": features, "blocks": blocks, "frames": frames,
                       "scale": scale, "reduction": reduction}
        self.frames = frames
        out = in_channels * scale**2
        self.head = nn.Conv3d(in_channels, features, 3, padding=1)
        self.body = nn.Sequential(*[ResidualAttentionBlock(features, reduction, 3) for _ in range(blocks)],
                                  nn.Conv3d(features, features, 3, padding=1))
        reductions = (frames - 1) // 2
        self.reduce = nn.Sequential(*[
            nn.Sequential(ResidualAttentionBlock(features, reduction, 3),
                          nn.Conv3d(features, features, 3, padding=(0, 1, 1)))  # T -> T - 2
            for _ in range(reductions)])
        left = frames - 2 * reductions  # 1 or 2 frames
        self.tail = nn.Conv3d(features, out, (left, 3, 3), padding=(0, 1, 1))
        self.global_branch = nn.Sequential(
            nn.Conv2d(frames * in_channels, features, 3, padding=1),
            ResidualAttentionBlock(features, reduction, 2),
            nn.Conv2d(features, out, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """frames B×T×C×h×w (exactly `self.frames` of them) -> B×C×(scale·h)×(scale·w)."""
        if frames.shape[1] != self.frames:
            raise ValueError(f"RAMS was built for {self.frames} frames, got {frames.shape[1]}")
        volume = frames.transpose(1, 2)  # B×C×T×h×w: frames are the depth of a 3D convolution
        x = self.head(volume)
        x = self.reduce(x + self.body(x))
        main = self.shuffle(self.tail(x).squeeze(2))
        residual = self.shuffle(self.global_branch(frames.flatten(1, 2)))
        return main + residual
