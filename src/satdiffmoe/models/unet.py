"""The denoising UNet: a diffusers `UNet2DModel` built from `model.unet` or loaded from a folder.

`with_extra_inputs` is how a conditional model starts from a prior (docs/ARCHITECTURE.md, "Denoisers"): the same weights,
extra conv_in input channels set to zero and an identity class embedding through which scalar
embeddings (Δt, metadata) are added to the timestep embedding, so the copy computes exactly the prior.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import UNet2DModel
from omegaconf import DictConfig

from .portable import portable_config
from .pretrained import load_local_pretrained


def build_unet(unet_cfg: DictConfig, in_channels: int, out_channels: int, sample_size: int,
               class_embedding: bool = False) -> UNet2DModel:
    if len(unet_cfg.attention_levels) != len(unet_cfg.block_out_channels):
        raise ValueError(f"model.unet.attention_levels has {len(unet_cfg.attention_levels)} entries but "
                        f"model.unet.block_out_channels has {len(unet_cfg.block_out_channels)}; give one per level")
    attention = list(unet_cfg.attention_levels)
    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=out_channels,
        block_out_channels=tuple(unet_cfg.block_out_channels),
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
        layers_per_block=unet_cfg.layers_per_block,
        attention_head_dim=unet_cfg.attention_head_dim,
        norm_num_groups=unet_cfg.norm_num_groups,
        dropout=unet_cfg.dropout,
        class_embed_type="identity" if class_embedding else None,
    )


def load_pretrained_unet(folder: str | Path) -> UNet2DModel:
    """A local diffusers UNet2DModel folder (config.json + weights) written by `save_pretrained`."""
    return load_local_pretrained(UNet2DModel, folder, "model.unet.pretrained",
                                 "point it at a folder written by UNet2DModel.save_pretrained")


def with_extra_inputs(unet: UNet2DModel, extra_in_channels: int, class_embedding: bool,
                      zero_extra: bool = True) -> UNet2DModel:
    """A copy of `unet` with `extra_in_channels` conv_in inputs appended: zero-initialised, or with
    diffusers' default init (`zero_extra=False`) when a zero-initialised condition encoder feeds them
    (a zero weight reading a zero input gets no gradient, and neither does the input)."""
    if unet.config.class_embed_type not in (None, "identity"):
        raise ValueError(f"cannot extend a UNet with class_embed_type={unet.config.class_embed_type!r}; "
                         "use a prior built by this project or one without class embeddings")
    config = portable_config(unet.config)  # without `_use_default_values`, which from_config would re-apply
    config["in_channels"] = unet.config.in_channels + extra_in_channels
    config["class_embed_type"] = "identity" if class_embedding else unet.config.class_embed_type
    extended = UNet2DModel.from_config(config)
    state = unet.state_dict()
    old = state["conv_in.weight"]
    new = torch.zeros(old.shape[0], config["in_channels"], *old.shape[2:], dtype=old.dtype)
    if not zero_extra:
        new.copy_(extended.conv_in.weight.detach())
    new[:, : old.shape[1]] = old
    state["conv_in.weight"] = new
    extended.load_state_dict(state)  # identity class embeddings have no weights: strict load still holds
    return extended
