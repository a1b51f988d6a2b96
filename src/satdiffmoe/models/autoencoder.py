"""The latent autoencoder: a diffusers `AutoencoderKL` built from `model.vae` or loaded from a folder."""

from __future__ import annotations

from pathlib import Path

from diffusers import AutoencoderKL
from omegaconf import DictConfig

from .pretrained import load_local_pretrained


def build_vae(vae_cfg: DictConfig, channels: int) -> AutoencoderKL:
    """A fresh AutoencoderKL; one down/up block per entry of `block_out_channels` (latent = image / 2^(n-1))."""
    levels = len(vae_cfg.block_out_channels)
    return AutoencoderKL(
        in_channels=channels,
        out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=tuple(vae_cfg.block_out_channels),
        layers_per_block=vae_cfg.layers_per_block,
        latent_channels=vae_cfg.latent_channels,
        norm_num_groups=vae_cfg.norm_num_groups,
        # 1.0 until the autoencoder stage measures 1/std of the latents (or the config fixes it)
        scaling_factor=vae_cfg.scaling_factor or 1.0,
    )


def load_pretrained_vae(folder: str | Path) -> AutoencoderKL:
    """A local diffusers AutoencoderKL folder (config.json + weights), e.g. Stable Diffusion's `vae/`."""
    return load_local_pretrained(AutoencoderKL, folder, "model.vae.pretrained",
                                 "point it at a folder written by save_pretrained, e.g. <sd-download>/vae")


def downsampling_factor(vae: AutoencoderKL) -> int:
    """Image side / latent side."""
    return 2 ** (len(vae.config.block_out_channels) - 1)
