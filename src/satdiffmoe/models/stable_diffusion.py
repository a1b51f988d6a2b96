"""A local Stable Diffusion UNet (`UNet2DConditionModel`) as the denoiser, and diffusers' ControlNet on it.

`load_sd_backbone(folder)` reads a diffusers SD pipeline folder (`model_index.json`, `unet/`, `vae/`,
`scheduler/`, optionally `text_encoder/` + `tokenizer/`) or a bare `UNet2DConditionModel` folder,
local files and safetensors only.

`SDConditionalUNet` is `UNetDenoiser`'s concat-UNet, `forward(z_t, t, image, scalars)`, on an SD UNet
(models/denoisers.py `SDUNetDenoiser` wraps it as a denoiser):

* the condition image is concatenated to z_t through extra conv_in input channels that start at zero;
* scalar embeddings (Δt, GSD, ...) enter through the UNet's own class-embedding path,
  `class_embed_type="identity"`: `UNet2DConditionModel.forward` adds `class_embedding(class_labels)`
  to the timestep embedding (`emb = emb + class_emb`), and an identity class embedding has no
  weights, so the pretrained state dict still loads strictly. The `ScalarEmbedding`s' last layers
  are zero, so they add exact zeros at step 0. (The alternative, `time_cond_proj_dim` /
  `timestep_cond`, adds a new random `cond_proj` *inside* the time MLP, before its non-linearity,
  and would need its own zeroing; the class path is also the one `UNetDenoiser` uses.);
* cross-attention gets one fixed prompt embedding for every sample: the folder's text encoder's
  output for `prompt`, computed once and kept as a buffer (so checkpoints carry it and the text
  encoder is not needed again), or, with no text encoder, learned null tokens.

Together these make the extended model compute exactly the pretrained UNet at step 0.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
from torch import nn

from .portable import portable_config
from .time_embedding import ScalarEmbedding

CONFIG_KEY = "model.unet.pretrained"
FOLDER_LAYOUT = ("a diffusers Stable Diffusion folder (model_index.json, unet/, vae/, scheduler/, optionally "
                 "text_encoder/ + tokenizer/) or a UNet2DConditionModel folder (config.json + "
                 "diffusion_pytorch_model.safetensors)")


class BackboneFolderError(ValueError):
    """The folder exists but is not a usable SD backbone (`errors.user_errors` makes it one CLI line)."""


class BackboneFolderMissing(FileNotFoundError):
    """The folder, or a part of it that its `model_index.json` names, is not there."""


@dataclass
class SDBackbone:
    """What `load_sd_backbone` found in a folder; `vae`, `scheduler_config`, text parts may be None."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL | None = None
    scheduler_config: dict | None = None
    text_encoder: Any = None  # transformers CLIPTextModel
    tokenizer: Any = None  # transformers CLIPTokenizer
    folder: Path | None = None

    @property
    def prediction_type(self) -> str:
        """"epsilon" (SD 1.x, SD 2.x-base) or "v_prediction" (SD 2.x 768); epsilon without a scheduler."""
        return (self.scheduler_config or {}).get("prediction_type", "epsilon")

    @property
    def latent_scale(self) -> float | None:
        return None if self.vae is None else float(self.vae.config.scaling_factor)

    @property
    def vae_factor(self) -> int | None:
        return None if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)


def pretrained_folder_kind(folder: str | Path) -> str:
    """"sd_pipeline", "sd_unet" (bare UNet2DConditionModel) or "unet2d" (this project's UNet2DModel)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BackboneFolderMissing(f"{CONFIG_KEY}={folder} does not exist; point it at {FOLDER_LAYOUT}")
    if (folder / "model_index.json").is_file():
        return "sd_pipeline"
    if (folder / "config.json").is_file():
        name = json.loads((folder / "config.json").read_text()).get("_class_name")
        if name == "UNet2DConditionModel":
            return "sd_unet"
        if name == "UNet2DModel":
            return "unet2d"
        raise BackboneFolderError(f"{CONFIG_KEY}={folder} holds a {name!r}, not a UNet; point it at {FOLDER_LAYOUT}")
    raise BackboneFolderError(f"{CONFIG_KEY}={folder} has neither model_index.json nor config.json; "
                              f"point it at {FOLDER_LAYOUT}")


def check_supported(unet: UNet2DConditionModel, folder: Path) -> None:
    config = unet.config
    if config.class_embed_type not in (None, "identity") or config.num_class_embeds is not None:
        raise BackboneFolderError(f"{CONFIG_KEY}={folder}: a UNet with class embeddings "
                                  f"(class_embed_type={config.class_embed_type!r}, e.g. the x4 upscaler) "
                                  "cannot take the Δt/metadata embeddings; use an SD 1.x / 2.x text-to-image UNet")
    if config.addition_embed_type is not None or config.encoder_hid_dim_type is not None:
        raise BackboneFolderError(f"{CONFIG_KEY}={folder}: UNets with addition_embed_type="
                                  f"{config.addition_embed_type!r} (SDXL-style extra conditioning) are not "
                                  "supported; use an SD 1.x / 2.x text-to-image UNet")


def load_model(model_class, folder: Path, subfolder: str | None):
    where = folder / subfolder if subfolder else folder
    if not (where / "config.json").is_file():
        raise BackboneFolderMissing(f"{CONFIG_KEY}={folder}: {where} has no config.json; point it at {FOLDER_LAYOUT}")
    try:  # use_safetensors=True: never unpickle a .bin from a folder someone handed us
        return model_class.from_pretrained(str(folder), subfolder=subfolder, local_files_only=True,
                                           use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackboneFolderError(
            f"cannot load {model_class.__name__} from {where}: {str(exc).splitlines()[0]} (the weights must be "
            "safetensors: re-save the model with from_pretrained(...).save_pretrained(...), which writes them)"
        ) from None


def load_text_parts(folder: Path):
    try:
        from transformers import CLIPTextModel, CLIPTokenizer
    except ImportError:
        raise BackboneFolderError(f"{CONFIG_KEY}={folder} has a text encoder but transformers is not installed; "
                                  "pip install transformers (or remove text_encoder/ to use learned null tokens)"
                                  ) from None
    try:
        text_encoder = CLIPTextModel.from_pretrained(str(folder / "text_encoder"), local_files_only=True,
                                                     use_safetensors=True)
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise BackboneFolderError(f"cannot load the text encoder/tokenizer of {folder}: {str(exc).splitlines()[0]} "
                                  "(expected transformers' CLIPTextModel with safetensors and CLIPTokenizer)") from None
    return text_encoder.eval().requires_grad_(False), tokenizer


def load_sd_backbone(folder: str | Path, text_encoder: bool = True) -> SDBackbone:
    """The UNet2DConditionModel of `folder`, plus its VAE, scheduler config and text encoder when present.

    `text_encoder=False` skips loading text_encoder/ and tokenizer/ (e.g. when rebuilding from a
    checkpoint that already holds the prompt embedding).
    """
    folder = Path(folder)
    kind = pretrained_folder_kind(folder)
    if kind == "unet2d":
        raise BackboneFolderError(f"{CONFIG_KEY}={folder} is a UNet2DModel (the from-scratch prior), not a Stable "
                                  f"Diffusion UNet; load it with models.unet.load_pretrained_unet, or point at "
                                  f"{FOLDER_LAYOUT}")
    if kind == "sd_unet":
        unet = load_model(UNet2DConditionModel, folder, None)
        check_supported(unet, folder)
        return SDBackbone(unet=unet, folder=folder)

    index = json.loads((folder / "model_index.json").read_text())
    if not (folder / "unet").is_dir():
        raise BackboneFolderMissing(f"{CONFIG_KEY}={folder} has model_index.json but no unet/ folder; "
                                    f"point it at {FOLDER_LAYOUT}")
    unet = load_model(UNet2DConditionModel, folder, "unet")
    check_supported(unet, folder)
    vae = load_model(AutoencoderKL, folder, "vae") if (folder / "vae").is_dir() else None
    scheduler_file = folder / "scheduler" / "scheduler_config.json"
    scheduler_config = json.loads(scheduler_file.read_text()) if scheduler_file.is_file() else None
    backbone = SDBackbone(unet=unet, vae=vae, scheduler_config=scheduler_config, folder=folder)
    has_text = index.get("text_encoder", [None])[0] is not None and (folder / "text_encoder").is_dir()
    if text_encoder and has_text:
        if not (folder / "tokenizer").is_dir():
            raise BackboneFolderMissing(f"{folder} has text_encoder/ but no tokenizer/; copy the tokenizer folder "
                                        "of the same SD release next to it")
        backbone.text_encoder, backbone.tokenizer = load_text_parts(folder)
    return backbone


@torch.no_grad()
def encode_prompt(text_encoder, tokenizer, prompt: str) -> torch.Tensor:
    """1 × L × D: the text encoder's last hidden state, padded to the tokenizer's max length, as
    `StableDiffusionPipeline.encode_prompt` computes it (no clip-skip)."""
    tokens = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    mask = tokens.attention_mask if getattr(text_encoder.config, "use_attention_mask", False) else None
    return text_encoder(tokens.input_ids, attention_mask=mask)[0].float()


def with_extra_sd_inputs(unet: UNet2DConditionModel, extra_in_channels: int, class_embedding: bool,
                         zero_extra: bool = True) -> UNet2DConditionModel:
    """A copy of `unet` with `extra_in_channels` conv_in inputs appended (zero unless `zero_extra=False`)
    and, with `class_embedding`, an identity class embedding for the scalar embeddings."""
    # portable_config() drops `_use_default_values`: from_config resets every key listed there to its
    # default, so `class_embed_type="identity"` would silently be ignored for a loaded SD config.
    config = portable_config(unet.config)
    config["in_channels"] = unet.config.in_channels + extra_in_channels
    if class_embedding:
        config["class_embed_type"] = "identity"
    extended = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old = state["conv_in.weight"]
    new = extended.conv_in.weight.detach().clone().to(old.dtype)  # diffusers' init, kept with zero_extra=False
    if zero_extra:
        new.zero_()
    new[:, : old.shape[1]] = old
    state["conv_in.weight"] = new
    extended.load_state_dict(state)  # an identity class embedding has no weights: the strict load holds
    return extended if old.dtype == torch.float32 else extended.to(dtype=old.dtype)


class SDConditionalUNet(nn.Module):
    """`UNetDenoiser`'s concat-UNet `forward(z_t, t, image, scalars)` on a `UNet2DConditionModel` (module doc).

    `prompt_embedding` (1 × L × D) is stored as a buffer; without one, `null_tokens` learned tokens
    (1 × null_tokens × cross_attention_dim) are used instead.
    """

    def __init__(self, unet: UNet2DConditionModel, cond_channels: int = 0, scalar_names: Iterable[str] = (),
                 prompt_embedding: torch.Tensor | None = None, null_tokens: int = 77, prompt: str | None = None,
                 scheduler_config: dict | None = None):
        super().__init__()
        scalar_names = list(scalar_names)
        if scalar_names and unet.config.class_embed_type != "identity":
            raise ValueError("scalar embeddings need a UNet2DConditionModel with class_embed_type='identity' "
                             "(build it with with_extra_sd_inputs or SDConditionalUNet.from_pretrained_backbone)")
        self.unet = unet
        self.cond_channels = cond_channels
        self.prompt = prompt
        self.scheduler_config = portable_config(scheduler_config) if scheduler_config is not None else None
        time_embed_dim = unet.time_embedding.linear_2.out_features
        self.scalars = nn.ModuleDict({name: ScalarEmbedding(time_embed_dim) for name in scalar_names})
        width = unet.config.cross_attention_dim
        if prompt_embedding is not None:
            if prompt_embedding.ndim != 3 or prompt_embedding.shape[0] != 1 or prompt_embedding.shape[2] != width:
                raise ValueError(f"prompt_embedding must be 1 x L x {width}, got {tuple(prompt_embedding.shape)}")
            self.register_buffer("prompt_embedding", prompt_embedding.detach().clone())
            self.null_tokens = None
        else:
            self.prompt_embedding = None
            # Small random, not zero: identical tokens get identical gradients and would never separate.
            self.null_tokens = nn.Parameter(torch.randn(1, null_tokens, width) * 0.02)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @property
    def prediction_type(self) -> str:
        return (self.scheduler_config or {}).get("prediction_type", "epsilon")

    @property
    def always_trainable(self) -> tuple[str, ...]:
        """Parameter-name prefixes that `apply_trainable` keeps trainable in every mode (the new parts)."""
        prefixes = ["unet.conv_in"] + [f"scalars.{name}" for name in self.scalars]
        return tuple(prefixes + (["null_tokens"] if self.null_tokens is not None else []))

    @classmethod
    def from_pretrained_backbone(cls, backbone: SDBackbone | str | Path, cond_channels: int = 0,
                                 scalar_names: Iterable[str] = (), prompt: str = "a satellite image",
                                 null_tokens: int = 77, zero_cond_weights: bool = True) -> SDConditionalUNet:
        """The backbone's UNet with `cond_channels` extra conv_in inputs and the scalar embeddings.

        `zero_cond_weights=False` gives the extra conv_in channels diffusers' default init instead of
        zeros; use it when a zero-initialised `ConditionEncoder` feeds them: a zero weight reading a
        zero input gets zero gradient and so does the input, and neither would ever move.
        """
        if not isinstance(backbone, SDBackbone):
            backbone = load_sd_backbone(backbone)
        scalar_names = list(scalar_names)
        unet = with_extra_sd_inputs(backbone.unet, cond_channels, bool(scalar_names), zero_extra=zero_cond_weights)
        embedding = None
        if backbone.text_encoder is not None:
            embedding = encode_prompt(backbone.text_encoder, backbone.tokenizer, prompt)
        return cls(unet, cond_channels, scalar_names, prompt_embedding=embedding, null_tokens=null_tokens,
                   prompt=prompt if embedding is not None else None, scheduler_config=backbone.scheduler_config)

    @classmethod
    def from_prior(cls, prior: SDConditionalUNet, cond_channels: int, scalar_names: Iterable[str],
                   zero_cond_weights: bool = True) -> SDConditionalUNet:
        """`UNetDenoiser.from_prior` for SD: the prior's weights, prompt and shared scalar embeddings;
        new conv_in channels and new scalar embeddings start at zero (output = prior's).
        Merge a LoRA prior first (`trainable.merge_lora`)."""
        scalar_names = list(scalar_names)
        unet = with_extra_sd_inputs(prior.unet, cond_channels - prior.cond_channels, bool(scalar_names),
                                    zero_extra=zero_cond_weights)
        model = cls(unet, cond_channels, scalar_names, prompt_embedding=prior.prompt_embedding,
                    null_tokens=prior.null_tokens.shape[1] if prior.null_tokens is not None else 77,
                    prompt=prior.prompt, scheduler_config=prior.scheduler_config)
        if prior.null_tokens is not None:
            model.null_tokens.data.copy_(prior.null_tokens.data)
        for name, embedding in prior.scalars.items():
            if name in model.scalars:
                model.scalars[name].load_state_dict(embedding.state_dict())
        return model

    def config_for_rebuild(self) -> dict:
        """Plain dict from which `from_rebuild_config` rebuilds this module (random weights, right shapes)
        without the SD folder; its `state_dict` then fills in the weights and the prompt embedding."""
        prompt_shape = (self.prompt_embedding if self.prompt_embedding is not None else self.null_tokens).shape
        return {
            "unet": portable_config(self.unet.config),
            "cond_channels": self.cond_channels,
            "scalar_names": list(self.scalars),
            "prompt": self.prompt,
            "prompt_source": "text_encoder" if self.prompt_embedding is not None else "null_tokens",
            "prompt_embedding_shape": list(prompt_shape),
            "scheduler": self.scheduler_config,
        }

    @classmethod
    def from_rebuild_config(cls, config: dict) -> SDConditionalUNet:
        unet = UNet2DConditionModel.from_config(config["unet"])
        shape = config["prompt_embedding_shape"]
        from_text = config["prompt_source"] == "text_encoder"
        return cls(unet, config["cond_channels"], config["scalar_names"],
                   prompt_embedding=torch.zeros(shape) if from_text else None, null_tokens=shape[1],
                   prompt=config["prompt"], scheduler_config=config["scheduler"])

    def encoder_hidden_states(self, batch_size: int, dtype: torch.dtype) -> torch.Tensor:
        tokens = self.prompt_embedding if self.prompt_embedding is not None else self.null_tokens
        return tokens.to(dtype).expand(batch_size, -1, -1)

    def unet_input(self, z_t: torch.Tensor, image: torch.Tensor | None) -> torch.Tensor:
        if not self.cond_channels:
            return z_t
        if image is None:
            raise ValueError(f"this model takes a {self.cond_channels}-channel condition image; got image=None")
        return torch.cat([z_t, image.to(z_t.dtype)], dim=1)

    def class_labels(self, scalars: dict[str, torch.Tensor] | None, sample: torch.Tensor) -> torch.Tensor | None:
        """Sum of the scalar embeddings (a missing scalar counts as unknown, NaN), or None without any."""
        if not self.scalars:
            return None
        scalars = scalars or {}
        nan = torch.full((sample.shape[0],), float("nan"), device=sample.device)
        return sum(emb(scalars.get(name, nan)) for name, emb in self.scalars.items())

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, image: torch.Tensor | None = None,
                scalars: dict[str, torch.Tensor] | None = None,
                down_block_additional_residuals: Sequence[torch.Tensor] | None = None,
                mid_block_additional_residual: torch.Tensor | None = None) -> torch.Tensor:
        sample = self.unet_input(z_t, image)
        return self.unet(sample, t, self.encoder_hidden_states(sample.shape[0], sample.dtype),
                         class_labels=self.class_labels(scalars, sample),
                         down_block_additional_residuals=down_block_additional_residuals,
                         mid_block_additional_residual=mid_block_additional_residual).sample


def controlnet_from_sd_unet(unet: UNet2DConditionModel | SDConditionalUNet, conditioning_channels: int,
                            conditioning_embedding_out_channels: Sequence[int] = (32,)) -> ControlNetModel:
    """diffusers' own `ControlNetModel.from_unet`: encoder weights copied, every residual conv zero.

    `conditioning_embedding_out_channels=(32,)` (no stride-2 convs) suits a condition already on the
    latent grid (the LR latent, or a `ConditionEncoder` output); SD's (16, 32, 96, 256) downsamples a
    pixel-space condition 8x, e.g. an upsampled 13-band LR at HR size. Merge LoRA adapters first.
    """
    base = unet.unet if isinstance(unet, SDConditionalUNet) else unet
    return ControlNetModel.from_unet(base, conditioning_channels=conditioning_channels,
                                     conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels))


def forward_with_control(model: SDConditionalUNet, controlnet: ControlNetModel, z_t: torch.Tensor,
                         t: torch.Tensor, control: torch.Tensor, image: torch.Tensor | None = None,
                         scalars: dict[str, torch.Tensor] | None = None,
                         conditioning_scale: float = 1.0) -> torch.Tensor:
    """The controlled UNet output: the ControlNet's residuals enter through diffusers' own
    `down_block_additional_residuals` / `mid_block_additional_residual` arguments; the ControlNet sees
    the same sample, prompt tokens and scalar embeddings as the UNet."""
    sample = model.unet_input(z_t, image)
    hidden = model.encoder_hidden_states(sample.shape[0], sample.dtype)
    class_labels = model.class_labels(scalars, sample)
    down, mid = controlnet(sample, t, hidden, controlnet_cond=control.to(sample.dtype),
                           conditioning_scale=conditioning_scale, class_labels=class_labels, return_dict=False)
    return model.unet(sample, t, hidden, class_labels=class_labels, down_block_additional_residuals=down,
                      mid_block_additional_residual=mid).sample
