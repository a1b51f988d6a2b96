"""One bf16 training step of SatDiffMoE on a Stable-Diffusion-1.5-sized UNet2DConditionModel (random
weights: no real SD weights exist on these machines), LoRA and full fine-tuning, on a CUDA GPU."""

from __future__ import annotations

import json
import math

import lightning.pytorch as pl
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from torch.utils.data import DataLoader

from satdiffmoe.config import load_config
from satdiffmoe.data.collate import random_batch
from satdiffmoe.training import task_class


@pytest.fixture(scope="module")
def sd15_folder(tmp_path_factory):
    """The SD 1.5 architecture (860 M parameter UNet, f = 8 VAE) with random weights, in the SD layout."""
    folder = tmp_path_factory.mktemp("sd15")
    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=64, cross_attention_dim=768).save_pretrained(folder / "unet")
    AutoencoderKL(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                  block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                  sample_size=512).save_pretrained(folder / "vae")
    DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": [None, None], "tokenizer": [None, None]}))
    return folder


@pytest.mark.gpu
@pytest.mark.parametrize("trainable", ["lora", "all"])
def test_bf16_step_on_an_sd_sized_unet(sd15_folder, trainable):
    cfg = load_config(None, [
        "stage=satdiffmoe", f"model.unet.pretrained={sd15_folder}", "data.hr_size=256", "data.scale=4",
        "train.precision=bf16-mixed", "train.accelerator=gpu", f"train.trainable={trainable}", "train.max_steps=2",
        "train.warmup_steps=0", "train.ema_decay=0", "logging.wandb.mode=disabled", "logging.progress_bar=false"])
    task = task_class("satdiffmoe")(cfg)
    batch = random_batch(cfg, scenes=2, branches=1)
    trainer = pl.Trainer(max_steps=2, precision="bf16-mixed", accelerator="gpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
    trainer.fit(task, train_dataloaders=DataLoader([batch] * 2, batch_size=None))
    assert trainer.global_step == 2
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))
