"""`stage: diffusionsat` — the DiffusionSat baseline: a 3D ControlNet over a T-frame LR stack.

DiffusionSat (Khanna et al., ICLR 2024) conditions a latent diffusion model on numeric metadata
(sinusoid + MLP embeddings added to the timestep embedding) and on a temporal image stack through a
3D ControlNet. Here the frozen prior, VAE, condition latents, loss, validation and logging are those
of SatDiffMoE and the ControlNet baseline (`FromPriorTask`); the trainable parts are the
`TemporalControlNet` and the per-frame `MetadataEmbedding` (fields `model.controlnet.metadata_fields`),
composed in models/denoisers.py `DiffusionSatDenoiser`. docs/baselines.md lists where this follows
the paper and where it differs.

Training and sampling build the T-frame condition with the same function (pipelines/diffusionsat.py
`DiffusionSatPipeline.stack`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..models.denoisers import DiffusionSatDenoiser, SDDiffusionSatDenoiser, SDUNetDenoiser
from .base import Cond
from .from_prior import FromPriorTask

log = logging.getLogger(__name__)


class DiffusionSatTask(FromPriorTask):
    stage = "diffusionsat"
    default_denoiser = "DiffusionSatDenoiser"

    def configure_network(self, networks: dict | None) -> DiffusionSatDenoiser:
        cfg = self.cfg
        control = cfg.model.controlnet
        if cfg.data.train_lr_policy == "pair":
            log.warning("stage=diffusionsat trains on LR stacks but data.train_lr_policy=pair gives one LR per "
                        "scene; the temporal layers will not learn (use data.train_lr_policy=all)")
        if networks is not None:
            return self.stored_denoiser(networks) or DiffusionSatDenoiser(
                prior_config=self.legacy_prior_config(networks), controlnet_config=networks["controlnet"],
                metadata_fields=list(control.metadata_fields), conditioning_scale=control.conditioning_scale)
        prior = self.load_prior()
        # the 3D ControlNet on diffusers' ControlNetModel for a Stable Diffusion prior, on ours otherwise
        denoiser = SDDiffusionSatDenoiser if isinstance(prior, SDUNetDenoiser) else DiffusionSatDenoiser
        return denoiser.from_prior(prior, self.cond_channels, frames=int(control.frames),
                                               temporal_heads=control.temporal_heads,
                                               metadata_fields=list(control.metadata_fields),
                                               conditioning_scale=control.conditioning_scale,
                                               embedding_widths=self.condition_embedding_widths)

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, None]:
        return self.pipeline.stack(batch), None
