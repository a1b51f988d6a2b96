"""A learned encoder from a multiband LR (e.g. 13 Sentinel-2 bands) onto the latent grid.

When the LR bands differ from the HR bands the RGB VAE cannot encode the LR, so the condition comes
from this network instead: the LR upsampled to HR size (C_lr × H × W) → latent channels at H/f × W/f,
f = the VAE's downsampling factor. It is diffusers' `ControlNetConditioningEmbedding` (the same
conv/SiLU stack with one stride-2 conv per factor of 2 and a zero-initialised output conv), so at
step 0 it outputs exact zeros and the conditional model computes its prior.

Pitfall: do not feed its output into conv_in channels that are also zero-initialised
(`SDConditionalUNet.from_pretrained_backbone(..., zero_cond_weights=False)`): with both factors zero
both gradients are zero and neither ever trains. ControlNet's own conditioning embedding avoids this
by being *added* to conv_in features whose weights are not zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.models.controlnets.controlnet import ControlNetConditioningEmbedding
from torch import nn

# SD ControlNet's widths for its 8x conditioning embedding; deeper factors repeat the last width.
SD_WIDTHS = (16, 32, 96, 256)


def default_widths(downsample_factor: int) -> tuple[int, ...]:
    levels = downsample_factor.bit_length() - 1
    if downsample_factor < 1 or 2**levels != downsample_factor:
        raise ValueError(f"downsample_factor must be a power of two (the VAE's), got {downsample_factor}")
    return tuple(SD_WIDTHS[min(i, len(SD_WIDTHS) - 1)] for i in range(levels + 1))


class ConditionEncoder(nn.Module):
    """B × in_channels × H × W (upsampled LR, H and W multiples of `downsample_factor`) →
    B × latent_channels × H/f × W/f, zero at initialisation.

    `block_out_channels` has one entry per resolution (len = log2(f) + 1); default: SD ControlNet's.
    """

    def __init__(self, in_channels: int, latent_channels: int = 4, downsample_factor: int = 8,
                 block_out_channels: Sequence[int] | None = None):
        super().__init__()
        widths = tuple(block_out_channels) if block_out_channels is not None else default_widths(downsample_factor)
        if 2 ** (len(widths) - 1) != downsample_factor:
            raise ValueError(f"block_out_channels={list(widths)} downsamples {2 ** (len(widths) - 1)}x, "
                             f"not downsample_factor={downsample_factor}x; give log2(factor) + 1 widths")
        self.in_channels = in_channels
        self.latent_channels = latent_channels
        self.downsample_factor = downsample_factor
        self.block_out_channels = widths
        self.embedding = ControlNetConditioningEmbedding(conditioning_embedding_channels=latent_channels,
                                                         conditioning_channels=in_channels,
                                                         block_out_channels=widths)

    def config_for_rebuild(self) -> dict:
        """The constructor arguments, as a plain dict."""
        return {"in_channels": self.in_channels, "latent_channels": self.latent_channels,
                "downsample_factor": self.downsample_factor, "block_out_channels": list(self.block_out_channels)}

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        if lr.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} LR bands, got {lr.shape[1]} (check data.lr_channels)")
        if lr.shape[-2] % self.downsample_factor or lr.shape[-1] % self.downsample_factor:
            raise ValueError(f"LR size {tuple(lr.shape[-2:])} is not a multiple of {self.downsample_factor}; "
                             "upsample it to the HR size first")
        return self.embedding(lr.to(self.embedding.conv_in.weight.dtype))
