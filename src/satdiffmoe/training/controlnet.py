"""`stage: controlnet` — the ControlNet baseline: a frozen prior steered by one upsampled LR image.

Fair by construction (docs/baselines.md): the same frozen VAE and prior checkpoint as
SatDiffMoE (`init.vae_ckpt`, `init.prior_ckpt`), the same latent condition E(upsample(LR)), the same
Δt embedding (`ScalarEmbedding`, here added to the ControlNet's timestep embedding), and the loss,
validation and logging inherited from `DiffusionTask`. Only the ControlNet and the Δt embedding
train; the prior's weights never change (models/denoisers.py `ControlNetDenoiser`).

At evaluation a scene with N LR images becomes either one branch (the LR nearest in time) or, with
`sampler.late_fusion=true`, N independent branches averaged after decoding (pipelines/controlnet.py).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..models.denoisers import ControlNetDenoiser, SDControlNetDenoiser, SDUNetDenoiser
from ..pipelines.satdiffmoe import metadata_condition
from .base import Cond
from .from_prior import FromPriorTask

log = logging.getLogger(__name__)


class ControlNetTask(FromPriorTask):
    stage = "controlnet"
    default_denoiser = "ControlNetDenoiser"

    def configure_network(self, networks: dict | None) -> ControlNetDenoiser | SDControlNetDenoiser:
        cfg = self.cfg
        scale = cfg.model.controlnet.conditioning_scale
        if networks is not None:
            return self.stored_denoiser(networks) or ControlNetDenoiser(
                prior_config=self.legacy_prior_config(networks), controlnet_config=networks["controlnet"],
                use_dt_embedding=bool(cfg.model.dt_embedding), conditioning_scale=scale)
        prior = self.load_prior()
        # diffusers' own ControlNetModel on a Stable Diffusion prior, ours on a UNet2DModel one
        denoiser = SDControlNetDenoiser if isinstance(prior, SDUNetDenoiser) else ControlNetDenoiser
        return denoiser.from_prior(prior, self.cond_channels, dt_embedding=bool(cfg.model.dt_embedding),
                                   conditioning_scale=scale, embedding_widths=self.condition_embedding_widths)

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, torch.Tensor]:
        """One LR per scene: with `train_lr_policy=pair` the datamodule already picked it; otherwise a
        random valid one."""
        valid = batch["lr_valid"]
        scores = torch.rand(valid.shape, generator=generator, device=valid.device).masked_fill(~valid, -1.0)
        index = scores.argmax(dim=1)
        rows = torch.arange(valid.shape[0], device=valid.device)
        cond = metadata_condition(self.condition_image(batch["lr"][rows, index]), batch["gsd"],
                                  self.network.prior.scalars)
        return (cond if isinstance(cond, dict) else {"image": cond}), batch["dt"][rows, index]
