"""DiffusionSat's 3D ControlNet: one control branch over a stack of T LR frames, mixed across time.

Khanna et al. (DiffusionSat, ICLR 2024) condition on a temporal stack of images with a ControlNet
whose encoder runs on every frame (each with its own metadata embedding added to the timestep
embedding) and is interleaved with temporal layers that let frames exchange information. Here:

* every frame goes through the `UNet2DControlNet` encoder copied from the prior (frames are folded
  into the batch, so convolutions and GroupNorms never mix frames);
* after every down block and after the mid block a `TemporalAttention` layer (diffusers `Attention`,
  SDPA) attends across the T frames at each pixel; its output projection starts at zero, so at
  initialisation the network is the per-frame 2D ControlNet;
* the per-frame features are averaged over the valid frames and leave through the zero convs.

Padding is masked, not just zeroed: padded frames are never attended to and never averaged, and
their inputs are replaced by zeros first so that NaN metadata in a padded slot cannot leak through
`0 * NaN`. There is no positional encoding over the frame axis: a frame's place in time is its Δt /
day-of-year metadata, so the output does not depend on the order of the stack.

`SDTemporalControlNet` is the same network on a Stable Diffusion backbone (diffusers' `ControlNetModel`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers import ConfigMixin, ControlNetModel, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_processor import Attention
from diffusers.models.controlnets.controlnet import ControlNetOutput
from torch import nn

from .controlnet import UNet2DControlNet, timestep_embedding
from .portable import portable_config


class TemporalAttention(nn.Module):
    """Residual self-attention over the frame axis at every pixel, with a key-padding mask."""

    def __init__(self, channels: int, heads: int, norm_num_groups: int):
        super().__init__()
        if channels % heads:
            raise ValueError(f"temporal attention: {channels} channels are not divisible by {heads} heads")
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=1e-6)
        self.attention = Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=True)
        # Zero output projection: the layer is the identity until training moves it (as in
        # AnimateDiff-style temporal modules), so the copied prior encoder starts undisturbed.
        nn.init.zeros_(self.attention.to_out[0].weight)
        nn.init.zeros_(self.attention.to_out[0].bias)

    def forward(self, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """hidden: (R·T)×C×H×W, frames of a row contiguous; valid: R×T bool."""
        rows, frames = valid.shape
        _, channels, height, width = hidden.shape
        # Per-frame GroupNorm before regrouping, so padded frames never enter another frame's statistics.
        tokens = self.norm(hidden).view(rows, frames, channels, height * width)
        tokens = tokens.permute(0, 3, 1, 2).reshape(rows * height * width, frames, channels)
        bias = torch.zeros(valid.shape, dtype=tokens.dtype, device=tokens.device)
        bias = bias.masked_fill(~valid, torch.finfo(tokens.dtype).min)
        bias = bias.repeat_interleave(height * width, dim=0)[:, None, :]  # (R·H·W)×1×T key mask
        mixed = self.attention(tokens, attention_mask=bias)
        mixed = mixed.view(rows, height * width, frames, channels).permute(0, 2, 3, 1)
        return hidden + mixed.reshape(rows * frames, channels, height, width)


def checked_frames(controlnet_cond: torch.Tensor, frame_valid: torch.Tensor, num_frames: int) -> torch.Tensor:
    """R×T×C×H×W condition frames -> (R·T)×C×H×W with padded frames zeroed (NaN never leaks through
    `0 * NaN`), after checking the stack fits the network and every row has a valid frame."""
    rows, frames = frame_valid.shape
    if frames > num_frames:
        raise ValueError(f"got {frames} frames, the 3D ControlNet was built for at most {num_frames}")
    if not bool(frame_valid.any(dim=1).all()):
        raise ValueError("every row needs at least one valid frame")
    keep = frame_valid.view(rows, frames, 1, 1, 1)
    return torch.where(keep, controlnet_cond, torch.zeros_like(controlnet_cond)).flatten(0, 1)


def masked_frame_mean(features: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(R·T)×... per-frame features -> R×... mean over the valid frames of each row."""
    rows, frames = valid.shape
    features = features.view(rows, frames, *features.shape[1:])
    weights = valid.to(features.dtype).view(rows, frames, *([1] * (features.ndim - 2)))
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TemporalControlNet(UNet2DControlNet):
    """A `UNet2DControlNet` over a T-frame stack with per-frame embeddings and temporal attention."""

    @register_to_config
    def __init__(
        self,
        unet_config: dict,
        conditioning_channels: int = 4,
        conditioning_embedding_out_channels: Sequence[int] = (32,),
        num_frames: int = 8,
        temporal_heads: int = 4,
    ):
        # Keywords, not positions: diffusers' `register_to_config` records positional arguments of the
        # parent's init as "defaults", which `from_config` would then drop.
        super().__init__(unet_config=unet_config, conditioning_channels=conditioning_channels,
                         conditioning_embedding_out_channels=conditioning_embedding_out_channels)
        groups = self.config.unet_config["norm_num_groups"]
        mixed_channels = list(self.config.unet_config["block_out_channels"])
        mixed_channels.append(mixed_channels[-1])  # the mid block
        self.temporal_layers = nn.ModuleList(TemporalAttention(c, temporal_heads, groups) for c in mixed_channels)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float,
        controlnet_cond: torch.Tensor,
        frame_valid: torch.Tensor,
        frame_emb: torch.Tensor | None = None,
        conditioning_scale: float = 1.0,
    ) -> ControlNetOutput:
        """sample R×C×h×w; controlnet_cond R×T×Cc×h×w; frame_valid R×T bool; frame_emb R×T×E metadata."""
        rows, frames = frame_valid.shape
        frames_in = checked_frames(controlnet_cond, frame_valid, self.config.num_frames)

        emb = timestep_embedding(self, sample, timestep).repeat_interleave(frames, dim=0)
        if frame_emb is not None:
            frame_emb = torch.where(frame_valid[..., None], frame_emb, torch.zeros_like(frame_emb))
            emb = emb + frame_emb.flatten(0, 1).to(emb.dtype)

        hidden = self.conv_in(sample).repeat_interleave(frames, dim=0) + self.controlnet_cond_embedding(frames_in)
        features = [hidden]
        for block, temporal in zip(self.down_blocks, self.temporal_layers):
            hidden, res = block(hidden_states=hidden, temb=emb)
            hidden = temporal(hidden, frame_valid)
            # The block's last skip is its output; emit the time-mixed version.
            features += list(res[:-1]) + [hidden]
        mid = self.temporal_layers[-1](self.mid_block(hidden, emb), frame_valid)

        features = [masked_frame_mean(f, frame_valid) for f in features]
        return self.zero_convs(features, masked_frame_mean(mid, frame_valid), conditioning_scale)


class SDTemporalControlNet(ModelMixin, ConfigMixin):
    """`TemporalControlNet` on a Stable Diffusion backbone: diffusers' `ControlNetModel` (from
    `ControlNetModel.from_unet` of the SD prior) run on every frame, with the same temporal attention
    after each down block and the mid block, and the same masked frame mean before its zero convs.

    The frames share the prior's prompt tokens (cross-attention) and its class labels (GSD); each adds
    its own metadata embedding to the timestep embedding. Returns diffusers' residual pair
    (down_block_additional_residuals, mid_block_additional_residual).
    """

    @register_to_config
    def __init__(self, controlnet_config: dict, num_frames: int = 8, temporal_heads: int = 4):
        super().__init__()
        self.controlnet = ControlNetModel.from_config(controlnet_config)
        config = self.controlnet.config
        mixed_channels = [*config.block_out_channels, config.block_out_channels[-1]]  # + the mid block
        self.temporal_layers = nn.ModuleList(
            TemporalAttention(c, temporal_heads, config.norm_num_groups) for c in mixed_channels)

    @classmethod
    def from_controlnet(cls, controlnet: ControlNetModel, num_frames: int, temporal_heads: int) -> SDTemporalControlNet:
        model = cls(controlnet_config=portable_config(controlnet.config), num_frames=num_frames,
                    temporal_heads=temporal_heads)
        model.controlnet.load_state_dict(controlnet.state_dict())
        return model

    @property
    def time_embed_dim(self) -> int:
        return self.controlnet.time_embedding.linear_2.out_features

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                controlnet_cond: torch.Tensor, frame_valid: torch.Tensor, frame_emb: torch.Tensor | None = None,
                class_labels: torch.Tensor | None = None, conditioning_scale: float = 1.0):
        """sample R×C×h×w; encoder_hidden_states R×L×D; controlnet_cond R×T×Cc×H×W; frame_valid R×T."""
        net = self.controlnet
        rows, frames = frame_valid.shape
        frames_in = checked_frames(controlnet_cond, frame_valid, self.config.num_frames)

        timesteps = torch.as_tensor(timestep, device=sample.device).expand(rows)
        emb = net.time_embedding(net.time_proj(timesteps).to(sample.dtype))
        if net.class_embedding is not None:  # identity: the prior's scalar embeddings, as in its own forward
            emb = emb + net.class_embedding(class_labels).to(emb.dtype)
        emb = emb.repeat_interleave(frames, dim=0)
        if frame_emb is not None:
            frame_emb = torch.where(frame_valid[..., None], frame_emb, torch.zeros_like(frame_emb))
            emb = emb + frame_emb.flatten(0, 1).to(emb.dtype)
        text = encoder_hidden_states.repeat_interleave(frames, dim=0)

        hidden = net.conv_in(sample).repeat_interleave(frames, dim=0) + net.controlnet_cond_embedding(frames_in)
        features = [hidden]
        for block, temporal in zip(net.down_blocks, self.temporal_layers):
            if getattr(block, "has_cross_attention", False):
                hidden, res = block(hidden_states=hidden, temb=emb, encoder_hidden_states=text)
            else:
                hidden, res = block(hidden_states=hidden, temb=emb)
            hidden = temporal(hidden, frame_valid)
            features += list(res[:-1]) + [hidden]  # the block's last skip is its output: the time-mixed one
        mid = self.temporal_layers[-1](net.mid_block(hidden, emb, encoder_hidden_states=text), frame_valid)

        down = [zero(masked_frame_mean(f, frame_valid)) * conditioning_scale
                for f, zero in zip(features, net.controlnet_down_blocks)]
        return down, net.controlnet_mid_block(masked_frame_mean(mid, frame_valid)) * conditioning_scale
