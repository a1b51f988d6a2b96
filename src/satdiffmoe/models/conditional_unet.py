"""A UNet over concat(z_t, spatial condition) with scalar embeddings added to its timestep embedding.

The prior is the special case with no spatial condition (and optionally a GSD embedding); SatDiffMoE
adds the LR condition channels and the Δt embedding. The network knows nothing about batches, VAEs or
schedulers: `forward(z_t, t, image, scalars)` returns the UNet output (ε or v).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers import UNet2DModel
from torch import nn

from .time_embedding import ScalarEmbedding
from .unet import with_extra_inputs


class ConditionalUNet(nn.Module):
    def __init__(self, unet: UNet2DModel, cond_channels: int = 0, scalar_names: Iterable[str] = ()):
        super().__init__()
        scalar_names = list(scalar_names)
        if scalar_names and unet.config.class_embed_type != "identity":
            raise ValueError("scalar embeddings need a UNet2DModel with class_embed_type='identity'")
        self.unet = unet
        self.cond_channels = cond_channels
        time_embed_dim = unet.time_embedding.linear_2.out_features
        self.scalars = nn.ModuleDict({name: ScalarEmbedding(time_embed_dim) for name in scalar_names})

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @classmethod
    def from_prior(cls, prior: ConditionalUNet, cond_channels: int, scalar_names: Iterable[str]) -> ConditionalUNet:
        """Copy the prior; new input channels and new scalar embeddings start at zero (output = prior's)."""
        scalar_names = list(scalar_names)
        extra = cond_channels - prior.cond_channels
        unet = with_extra_inputs(prior.unet, extra, class_embedding=bool(scalar_names))
        model = cls(unet, cond_channels, scalar_names)
        for name, embedding in prior.scalars.items():
            if name in model.scalars:
                model.scalars[name].load_state_dict(embedding.state_dict())
        return model

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, image: torch.Tensor | None = None,
                scalars: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        if self.cond_channels:
            z_t = torch.cat([z_t, image.to(z_t.dtype)], dim=1)
        class_labels = None
        if self.scalars:
            scalars = scalars or {}
            nan = torch.full((z_t.shape[0],), float("nan"), device=z_t.device)
            class_labels = sum(emb(scalars.get(name, nan)) for name, emb in self.scalars.items())
        return self.unet(z_t, t, class_labels=class_labels).sample
