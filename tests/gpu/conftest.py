"""Tiny real tasks for the GPU checks: 16 px HR, ×4, 8×8×4 latents, a random VAE and prior UNet saved
as local diffusers folders (the way a run starts from pretrained weights). GPU-only tests are marked
`gpu`; tests/conftest.py skips them where CUDA is missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from satdiffmoe.config import load_config
from satdiffmoe.data.collate import random_batch
from satdiffmoe.models.autoencoder import build_vae, downsampling_factor
from satdiffmoe.models.unet import build_unet

TINY = [
    "data.hr_size=16", "data.scale=4", "data.batch_size=4", "data.eval_batch_size=4", "data.val_subset=4",
    "model.vae.block_out_channels=[8,16]", "model.vae.norm_num_groups=4", "model.vae.latent_channels=4",
    "model.unet.block_out_channels=[16,32]", "model.unet.attention_levels=[false,true]",
    "model.unet.attention_head_dim=8", "model.unet.norm_num_groups=4", "model.controlnet.frames=2",
    "diffusion.num_train_timesteps=100", "train.max_steps=2", "train.warmup_steps=0", "train.val_every=100",
    "train.log_every=1", "train.ema_decay=0", "logging.wandb.mode=disabled", "logging.progress_bar=false",
]


@pytest.fixture(scope="session")
def pretrained_overrides(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("gpu_networks")
    cfg = load_config(None, TINY)
    torch.manual_seed(0)
    vae = build_vae(cfg.model.vae, cfg.data.channels)
    vae.save_pretrained(folder / "vae")
    side = cfg.data.hr_size // downsampling_factor(vae)
    latent = cfg.model.vae.latent_channels
    build_unet(cfg.model.unet, latent, latent, side).save_pretrained(folder / "unet")
    return [f"model.vae.pretrained={folder / 'vae'}", f"model.unet.pretrained={folder / 'unet'}"]


@pytest.fixture
def tiny_cfg(tmp_path, pretrained_overrides) -> Callable[..., Any]:
    """tiny_cfg("stage=controlnet", ...) -> a validated config on the tiny networks."""
    def make(*overrides: str):
        return load_config(None, TINY + pretrained_overrides + [f"run_root={tmp_path / 'runs'}", *overrides])
    return make


@pytest.fixture
def make_batch() -> Callable[..., dict]:
    """make_batch(cfg, scenes, branches, device) -> a SatDataModule-shaped batch of random scenes."""
    def make(cfg, scenes: int, branches: int, device: str) -> dict:
        return random_batch(cfg, scenes, branches, device)
    return make
