"""Tiny random Stable Diffusion folders with the real on-disk layout, written at test time (no downloads).

`write_tiny_sd(folder)` writes what `StableDiffusionPipeline.save_pretrained` writes for SD 2.x:
`model_index.json`, `unet/`, `vae/`, `scheduler/` (DDIM, v-prediction) and, with
`text_encoder=True`, a 2-layer random `CLIPTextModel` and a `CLIPTokenizer` whose files are the ones a
real SD folder carries (`vocab.json`, `merges.txt`, `tokenizer_config.json`). The vocabulary is the
26 lowercase letters (no merges), so any lowercase prompt tokenises character by character.
`model_index.json` is written by hand so that folders without a text encoder never import
transformers (~5 s).
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

CROSS_ATTENTION_DIM = 32
TOKENIZER_MAX_LENGTH = 16  # CLIP's is 77; the prompt embedding is then 1 x 16 x 32
LATENT_SIZE = 8
VAE_FACTOR = 2  # two VAE levels: HR images are 16 x 16


def tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=LATENT_SIZE * VAE_FACTOR,
    )


def write_tokenizer(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    letters = list(string.ascii_lowercase)
    vocab = {token: i for i, token in enumerate(letters + [c + "</w>" for c in letters])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": TOKENIZER_MAX_LENGTH, "tokenizer_class": "CLIPTokenizer",
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>"}))


def write_text_encoder(folder: Path, seed: int = 0) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    vocab_size = 2 * 26 + 2
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37,
                            num_hidden_layers=2, num_attention_heads=4, projection_dim=CROSS_ATTENTION_DIM,
                            max_position_embeddings=TOKENIZER_MAX_LENGTH,
                            bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1)
    CLIPTextModel(config).save_pretrained(folder)


def write_tiny_sd(folder: str | Path, text_encoder: bool = False, prediction_type: str = "v_prediction",
                  seed: int = 0) -> Path:
    """An SD-pipeline-layout folder of tiny random models; returns `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tiny_unet(seed).save_pretrained(folder / "unet")  # safetensors by default
    tiny_vae(seed).save_pretrained(folder / "vae")
    DDIMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                  clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                  prediction_type=prediction_type).save_pretrained(folder / "scheduler")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": [None, None],
        "tokenizer": [None, None],
    }
    if text_encoder:
        write_text_encoder(folder / "text_encoder", seed)
        write_tokenizer(folder / "tokenizer")
        index["text_encoder"] = ["transformers", "CLIPTextModel"]
        index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder
