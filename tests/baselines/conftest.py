"""Fixtures for the baseline tests (helpers live in baseline_toys.py)."""

import pytest
import torch
from baseline_toys import tiny_prior_unet
from diffusers import UNet2DModel


@pytest.fixture
def prior_unet() -> UNet2DModel:
    return tiny_prior_unet()


@pytest.fixture(scope="session")
def pretrained_dirs(tmp_path_factory):
    """A tiny VAE (16 px -> 8×8×4 latents) and prior saved as local diffusers folders."""
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("pretrained")
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4)
    vae.save_pretrained(root / "vae")
    tiny_prior_unet().save_pretrained(root / "unet")
    return root



@pytest.fixture(scope="session")
def synthetic_shards(tmp_path_factory):
    """30 synthetic scenes (16 px HR, ×4, 2-4 LRs) in shards of 8: 5 val scenes (uneven over 2 ranks), 3 test."""
    from satdiffmoe.cli import main

    data = tmp_path_factory.mktemp("regression_data") / "synth"
    assert main(["prepare", "synthetic", "--out", str(data), "--num-scenes", "30", "--hr-size", "16", "--scale", "4",
                 "--max-lr", "4", "--shard-size", "8", "--val-frac", "0.17", "--test-frac", "0.1"]) == 0
    return data
