"""Tiny configs, batches and a fixed-batch datamodule for the training tests (16 px HR, ×4, 8×8 latents).

Imported by the tests (pytest puts this folder on sys.path; the name is unique across tests/)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from satdiffmoe.config import load_config

TINY = [
    "data.hr_size=16", "data.scale=4", "data.channels=3", "data.batch_size=4", "data.eval_batch_size=4",
    "data.val_subset=4",
    "model.vae.block_out_channels=[8,16]", "model.vae.norm_num_groups=4", "model.vae.latent_channels=4",
    "model.unet.block_out_channels=[16,32]", "model.unet.attention_levels=[false,true]",
    "model.unet.attention_head_dim=8", "model.unet.norm_num_groups=4",
    "train.max_steps=4", "train.val_every=2", "train.log_every=1", "train.warmup_steps=0", "train.lr=1e-3",
    "train.lr_schedule=constant", "train.ema_decay=0", "train.val_nfe=2", "sampler.fusion_every=1",
    "logging.wandb.mode=disabled", "logging.progress_bar=false", "diffusion.num_train_timesteps=100",
]


def tiny_config(tmp_path, *overrides: str):
    return load_config(None, TINY + [f"run_root={Path(tmp_path) / 'runs'}", *overrides])


def tiny_batch(scenes: int = 4, num_lr: int = 2, seed: int = 0) -> dict:
    """A batch as SatDataModule yields it: smooth HR images and their 4× box-downsampled LR copies."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(scenes, 3, 4, 4, generator=g) * 2 - 1
    hr = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    lr = torch.nn.functional.avg_pool2d(hr, 4)[:, None].repeat(1, num_lr, 1, 1, 1)
    lr = lr + 0.05 * torch.randn(lr.shape, generator=g)
    return {
        "hr": hr, "lr": lr, "lr_mask": torch.ones(scenes, num_lr, 4, 4),
        "lr_valid": torch.ones(scenes, num_lr, dtype=torch.bool),
        "dt": torch.tensor([[-30.0, float("nan")]]).repeat(scenes, 1)[:, :num_lr],
        "lr_cloud": torch.zeros(scenes, num_lr), "lr_doy": torch.full((scenes, num_lr), 100.0),
        "gsd": torch.full((scenes,), 1.0), "hr_mask": torch.ones(scenes, 16, 16),
        "key": [f"scene{i}" for i in range(scenes)],
    }


class FixedBatches(Dataset):
    """`length` copies of one batch (batch_size=None loaders pass it through as is)."""

    def __init__(self, batch: dict, length: int):
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        return self.batch


class FixedDataModule(pl.LightningDataModule):
    """The same tiny batch every step: training is reproducible to the bit, so resumes can be compared."""

    def __init__(self, batch: dict, steps_per_epoch: int = 1):
        super().__init__()
        self.batch, self.steps_per_epoch = batch, steps_per_epoch

    def train_dataloader(self):
        return DataLoader(FixedBatches(self.batch, self.steps_per_epoch), batch_size=None)

    def val_dataloader(self):
        return DataLoader(FixedBatches(self.batch, 1), batch_size=None)
