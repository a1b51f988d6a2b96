"""`stage: diffusionsat` — the DiffusionSat baseline: a 3D ControlNet over a T-frame LR stack.

DiffusionSat (Khanna et al., ICLR 2024) conditions a latent diffusion model on numeric metadata
(sinusoid + MLP embeddings added to the timestep embedding) and on a temporal image stack through a
3D ControlNet. Here the frozen prior, VAE, condition latents, loss, validation and logging are those
of SatDiffMoE and the ControlNet baseline (`ControlledPriorTask`); the trainable parts are the
`TemporalControlNet` and the per-frame `MetadataEmbedding` (fields `model.controlnet.metadata_fields`).
docs/baselines.md lists where this follows the paper and where it differs.

A scene is ONE sampling branch whose `cond` holds the whole stack: T = `model.controlnet.frames`
frames (the T nearest in time when a scene has more; padded with `valid = False` when it has fewer).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from ..models.controlnet import unet_forward_with_control
from ..models.controlnet3d import TemporalControlNet
from ..models.metadata_embedding import MetadataEmbedding, frame_metadata
from ..sampling.fused_sampler import BranchInputs
from .base import Cond
from .controlnet import ControlledPriorTask, nearest_in_time

log = logging.getLogger(__name__)


def pad_frames(values: torch.Tensor, frames: int, fill: float | bool = 0) -> torch.Tensor:
    """Pad dim 1 (the LR axis) of a B×N×... tensor to `frames` entries."""
    missing = frames - values.shape[1]
    if missing <= 0:
        return values
    padding = values.new_full((values.shape[0], missing, *values.shape[2:]), fill)
    return torch.cat([values, padding], dim=1)


def frame_order(dt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """B×N indices: valid frames by |Δt| (unknown after known), padding last."""
    distance = dt.abs().nan_to_num(nan=torch.finfo(dt.dtype).max)
    distance = torch.where(valid, distance, torch.full_like(dt, float("inf")))
    return distance.argsort(dim=1, stable=True)


class DiffusionSatTask(ControlledPriorTask):
    stage = "diffusionsat"

    @property
    def frames(self) -> int:
        return int(self.cfg.model.controlnet.frames)

    def configure_network(self, networks: dict | None) -> nn.ModuleDict:
        cfg = self.cfg
        if cfg.data.train_lr_policy == "pair":
            log.warning("stage=diffusionsat trains on LR stacks but data.train_lr_policy=pair gives one LR per "
                        "scene; the temporal layers will not learn (use data.train_lr_policy=all)")
        prior = self.load_prior(networks)
        if networks is not None:
            controlnet = TemporalControlNet.from_config(networks["controlnet"])
        else:
            controlnet = TemporalControlNet.from_unet(prior.unet, conditioning_channels=self.cond_channels,
                                                      num_frames=self.frames,
                                                      temporal_heads=cfg.model.controlnet.temporal_heads)
        metadata = MetadataEmbedding(cfg.model.controlnet.metadata_fields, controlnet.time_embed_dim)
        return nn.ModuleDict({"prior": prior, "controlnet": controlnet, "metadata": metadata})

    # ------------------------------------------------------------------------------ conditions
    def stack(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The scene's T-frame condition: image B×T×C×h×w, valid B×T, one B×T tensor per metadata field."""
        T = self.frames
        valid = pad_frames(batch["lr_valid"], T, False)
        dt = pad_frames(batch["dt"], T)
        order = frame_order(dt, valid)[:, :T]

        def take(values: torch.Tensor) -> torch.Tensor:
            values = pad_frames(values, T)
            index = order.view(*order.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:])
            return values.gather(1, index)

        valid = valid.gather(1, order)
        lr = take(batch["lr"])
        images = self.condition_image(lr.flatten(0, 1)).unflatten(0, lr.shape[:2])
        cond = {"image": images, "valid": valid}
        metadata = frame_metadata(batch, self.cfg.model.controlnet.metadata_fields)
        cond.update({f"meta_{name}": take(value) for name, value in metadata.items()})
        if self.network["prior"].scalars:
            cond["gsd"] = batch["gsd"]
        return cond

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, None]:
        return self.stack(batch), None

    def drop_condition(self, cond: Cond, dt: torch.Tensor | None, drop: torch.Tensor) -> tuple[Cond, None]:
        """Dropped rows: no image, one valid frame, unknown per-frame metadata; the prior's GSD stays
        (as in `DiffusionTask.drop_condition`, which guidance at sampling uses too)."""
        cond = dict(cond)
        first_only = torch.zeros_like(cond["valid"])
        first_only[:, 0] = True
        cond["valid"] = torch.where(drop[:, None], first_only, cond["valid"])
        cond["image"] = torch.where(drop.view(-1, 1, 1, 1, 1), torch.zeros_like(cond["image"]), cond["image"])
        for key in [k for k in cond if k.startswith("meta_")]:
            cond[key] = torch.where(drop[:, None], torch.full_like(cond[key], float("nan")), cond[key])
        return cond, None

    def unconditional(self, z_t: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, T = z_t.shape[0], self.frames
        channels = self.network["controlnet"].config.conditioning_channels
        cond = {"image": z_t.new_zeros((rows, T, channels, *z_t.shape[2:])),
                "valid": torch.zeros((rows, T), dtype=torch.bool, device=z_t.device)}
        cond["valid"][:, 0] = True
        for name in self.cfg.model.controlnet.metadata_fields:
            cond[f"meta_{name}"] = torch.full((rows, T), float("nan"), device=z_t.device)
        return cond

    # ------------------------------------------------------------------------------- the network
    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor | None) -> torch.Tensor:
        prior_cond = cond
        if cond is None:
            cond = self.unconditional(z_t)
        metadata = {key[len("meta_"):]: value for key, value in cond.items() if key.startswith("meta_")}
        control = self.network["controlnet"](
            z_t, t, cond["image"], cond["valid"], self.network["metadata"](metadata),
            conditioning_scale=self.cfg.model.controlnet.conditioning_scale)
        return unet_forward_with_control(self.network["prior"].unet, z_t, t, control,
                                         class_labels=self.prior_class_labels(z_t, prior_cond))

    def branch_inputs(self, batch: dict[str, Any]) -> BranchInputs:
        """One branch per scene (leading dims B×1); the nearest LR rides along for references."""
        cond = {key: value[:, None] for key, value in self.stack(batch).items()}
        rows = torch.arange(batch["lr"].shape[0], device=batch["lr"].device)
        index = nearest_in_time(batch["dt"], batch["lr_valid"])
        return BranchInputs(cond=cond, dt=batch["dt"][rows, index][:, None],
                            valid=torch.ones(rows.shape[0], 1, dtype=torch.bool, device=rows.device),
                            lr=batch["lr"][rows, index][:, None], lr_mask=batch["lr_mask"][rows, index][:, None])
