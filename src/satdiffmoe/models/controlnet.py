"""ControlNet for a `UNet2DModel` prior, and the prior's forward pass with control residuals added.

The baseline is "`diffusers.ControlNetModel.from_unet(prior)`", but in diffusers 0.42.1 `from_unet`
only accepts a `UNet2DConditionModel`: given our `UNet2DModel` prior it fails with
`AttributeError: 'FrozenDict' object has no attribute 'only_cross_attention'`, and `ControlNetModel`
has no counterpart of the prior's self-attention blocks (`AttnDownBlock2D`, `UNetMidBlock2D` with
attention), so its state dict could not take the prior's weights anyway. `UNet2DModel.forward` also
has no `down_block_additional_residuals` argument. We therefore follow `from_unet` step by step with
the same diffusers components:

* the encoder (`conv_in`, `time_proj`, `time_embedding`, `down_blocks`, `mid_block`) is built from
  the prior's own config and gets a copy of the prior's weights (`load_weights_from_unet`);
* the condition enters through `ControlNetConditioningEmbedding` (zero-initialised output conv),
  added to the `conv_in` features;
* every encoder feature map leaves through a zero-initialised 1×1 conv (`zero_module`), so at step 0
  every residual is exactly zero and the controlled prior equals the prior.

The only change to the prior's forward is the ControlNet recipe itself: residuals are added to the
skip connections and to the mid-block output (`unet_forward_with_control`, mirroring
`UNet2DConditionModel.forward`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.controlnets.controlnet import (
    ControlNetConditioningEmbedding,
    ControlNetOutput,
    zero_module,
)
from torch import nn

from .portable import portable_config


def check_controllable(unet_config: dict) -> None:
    """Reject prior configurations whose forward pass `unet_forward_with_control` does not reproduce."""
    skip_blocks = [b for b in unet_config["down_block_types"] if "Skip" in b]
    if skip_blocks:
        raise ValueError(f"ControlNet baselines do not support skip down blocks {skip_blocks}; "
                        "train the prior with DownBlock2D / AttnDownBlock2D blocks")
    if unet_config.get("time_embedding_type", "positional") != "positional":
        raise ValueError("ControlNet baselines need a prior with time_embedding_type='positional'")
    if unet_config.get("center_input_sample", False):
        raise ValueError("ControlNet baselines need a prior with center_input_sample=False")


def timestep_embedding(model: nn.Module, sample: torch.Tensor, timestep: torch.Tensor | float) -> torch.Tensor:
    """`time_embedding(time_proj(t))` broadcast to the batch, exactly as `UNet2DModel.forward` does."""
    timesteps = torch.as_tensor(timestep, device=sample.device)
    if timesteps.ndim == 0:
        timesteps = timesteps[None]
    timesteps = timesteps.expand(sample.shape[0])
    return model.time_embedding(model.time_proj(timesteps).to(dtype=sample.dtype))


class UNet2DControlNet(ModelMixin, ConfigMixin):
    """A trainable copy of a `UNet2DModel`'s encoder that turns a condition into skip residuals."""

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        conditioning_channels: int = 4,
        conditioning_embedding_out_channels: Sequence[int] = (32,),
    ):
        super().__init__()
        check_controllable(unet_config)
        # The encoder is built by UNet2DModel itself from the prior's config, so its architecture can
        # never drift from the prior's; the decoder half is dropped with `unet`.
        unet = UNet2DModel.from_config(unet_config)
        self.conv_in = unet.conv_in
        self.time_proj = unet.time_proj
        self.time_embedding = unet.time_embedding
        self.down_blocks = unet.down_blocks
        self.mid_block = unet.mid_block

        # The condition is already at latent resolution (E(upsample(LR)) or LR resized to the latent
        # size), so a single-entry `conditioning_embedding_out_channels` (no stride-2 convs) is the
        # default; SD's (16, 32, 96, 256) would downsample a pixel-space condition 8x.
        first = unet.config.block_out_channels[0]
        self.controlnet_cond_embedding = ControlNetConditioningEmbedding(
            conditioning_embedding_channels=first,
            conditioning_channels=conditioning_channels,
            block_out_channels=tuple(conditioning_embedding_out_channels),
        )
        self.controlnet_down_blocks = nn.ModuleList(
            zero_module(nn.Conv2d(c, c, kernel_size=1)) for c in self.residual_channels()
        )
        last = unet.config.block_out_channels[-1]
        self.controlnet_mid_block = zero_module(nn.Conv2d(last, last, kernel_size=1))

    def residual_channels(self) -> list[int]:
        """Channels of every skip feature map, in the order the prior's up blocks consume them."""
        channels = [self.conv_in.out_channels]
        for block in self.down_blocks:
            channels += [resnet.out_channels for resnet in block.resnets]
            if block.downsamplers is not None:
                channels.append(block.downsamplers[0].out_channels)
        return channels

    @property
    def time_embed_dim(self) -> int:
        return self.time_embedding.linear_2.out_features

    @classmethod
    def from_unet(cls, unet: UNet2DModel, load_weights_from_unet: bool = True, **kwargs):
        """`ControlNetModel.from_unet` for a `UNet2DModel`: the prior's config, its encoder weights copied.

        `kwargs` are the remaining constructor arguments (of this class or a subclass).
        """
        controlnet = cls(unet_config=portable_config(unet.config), **kwargs)
        if load_weights_from_unet:
            for name in ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block"):
                getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
        return controlnet

    def encode(
        self,
        sample: torch.Tensor,
        emb: torch.Tensor,
        controlnet_cond: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Encoder features (before the zero convs) for an already-embedded timestep."""
        hidden = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        features = [hidden]
        for block in self.down_blocks:
            hidden, res = block(hidden_states=hidden, temb=emb)
            features += res
        return features, self.mid_block(hidden, emb)

    def zero_convs(
        self, features: Sequence[torch.Tensor], mid: torch.Tensor, conditioning_scale: float
    ) -> ControlNetOutput:
        down = tuple(conv(f) * conditioning_scale for conv, f in zip(self.controlnet_down_blocks, features))
        return ControlNetOutput(down_block_res_samples=down,
                                mid_block_res_sample=self.controlnet_mid_block(mid) * conditioning_scale)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        controlnet_cond: torch.Tensor,
        extra_emb: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
    ) -> ControlNetOutput:
        """Residuals for the prior. `extra_emb` (R×E, e.g. the Δt embedding) is added to the time embedding."""
        emb = timestep_embedding(self, sample, timestep)
        if extra_emb is not None:
            emb = emb + extra_emb.to(emb.dtype)
        features, mid = self.encode(sample, emb, controlnet_cond)
        return self.zero_convs(features, mid, conditioning_scale)


def unet_forward_with_control(
    unet: UNet2DModel,
    sample: torch.Tensor,
    timestep: torch.Tensor | float,
    control: ControlNetOutput | None = None,
    class_labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """`UNet2DModel.forward` with ControlNet residuals added to the skips and the mid-block output.

    Mirrors `UNet2DConditionModel.forward`'s `down_block_additional_residuals` /
    `mid_block_additional_residual`; with `control=None` it returns exactly `unet(sample, t).sample`.
    """
    emb = timestep_embedding(unet, sample, timestep)
    if unet.class_embedding is not None:
        if unet.config.class_embed_type == "timestep":
            class_labels = unet.time_proj(class_labels)
        emb = emb + unet.class_embedding(class_labels).to(emb.dtype)

    hidden = unet.conv_in(sample)
    skips: tuple[torch.Tensor, ...] = (hidden,)
    for block in unet.down_blocks:
        hidden, res = block(hidden_states=hidden, temb=emb)
        skips += res
    if unet.mid_block is not None:
        hidden = unet.mid_block(hidden, emb)

    if control is not None:
        if len(control.down_block_res_samples) != len(skips):
            raise ValueError(f"ControlNet gave {len(control.down_block_res_samples)} residuals, "
                             f"the UNet has {len(skips)} skips")
        skips = tuple(s + r for s, r in zip(skips, control.down_block_res_samples))
        hidden = hidden + control.mid_block_res_sample

    for block in unet.up_blocks:
        res, skips = skips[-len(block.resnets):], skips[: -len(block.resnets)]
        hidden = block(hidden, res, emb)
    return unet.conv_out(unet.conv_act(unet.conv_norm_out(hidden)))
