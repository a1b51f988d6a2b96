"""`stage: satdiffmoe` — the conditional LDM p(HR | one LR, Δt) of SatDiffMoE (arXiv 2406.10225).

UNet input = concat(z_t, c): latent conditioning c = E(bicubic-upsample(LR))·scale, pixel conditioning
c = LR resized to the latent size. Δt enters through `ScalarEmbedding` added to the timestep
embedding. The network starts as a copy of the prior (`init.prior_ckpt`, which also carries the VAE
the prior was trained on) with zero-initialised new inputs, so step 0 computes exactly the prior.
At sampling every LR of a scene is one branch (pipelines/satdiffmoe.py); the fused sampler pulls the
branches together.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ..models.autoencoder import downsampling_factor
from ..models.denoisers import SDUNetDenoiser, UNetDenoiser
from ..models.unet import build_unet
from ..pipelines.satdiffmoe import metadata_condition
from .from_prior import FromPriorTask

log = logging.getLogger(__name__)


class SatDiffMoETask(FromPriorTask):
    stage = "satdiffmoe"
    default_denoiser = "UNetDenoiser"

    @property
    def scalar_names(self) -> tuple[str, ...]:
        names = ("dt",) if self.cfg.model.dt_embedding else ()
        return names + (("gsd",) if self.cfg.model.metadata_embedding else ())

    def configure_network(self, networks: dict | None) -> UNetDenoiser | SDUNetDenoiser:
        cfg = self.cfg
        if networks is not None:
            # checkpoints written before models/denoisers.py stored the bare UNet's config
            return self.stored_denoiser(networks) or UNetDenoiser(
                unet_config=networks["unet"], cond_channels=self.concat_channels, scalar_names=list(self.scalar_names))
        encoder, channels = self.condition_encoder_config(), self.concat_channels
        prior = self.prior_network()
        if prior is None:
            log.warning("no init.prior_ckpt or model.unet.pretrained: training the conditional UNet from scratch")
            latent = self.vae.config.latent_channels
            side = cfg.data.hr_size // downsampling_factor(self.vae)
            unet = build_unet(cfg.model.unet, latent + channels, latent, side, class_embedding=bool(self.scalar_names))
            return UNetDenoiser.from_unet(unet, channels, self.scalar_names, encoder)
        return type(prior).from_prior(prior, channels, self.scalar_names, encoder)  # UNet2DModel or SD

    def condition_encoder_config(self) -> dict | None:
        """`model.conditioning=multiband`: a learned encoder of every LR band onto the latent grid
        (models/condition_encoder.py), zero at initialisation."""
        if self.cfg.model.conditioning != "multiband":
            return None
        return {"in_channels": self.cond_channels, "latent_channels": self.vae.config.latent_channels,
                "downsample_factor": downsampling_factor(self.vae),
                "block_out_channels": list(self.condition_embedding_widths)}

    @property
    def concat_channels(self) -> int:
        """Channels concatenated to z_t: the condition's, or its encoding's (multiband)."""
        return self.vae.config.latent_channels if self.cfg.model.conditioning == "multiband" else self.cond_channels

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator):
        """One valid LR per scene, drawn at random (`data.train_lr_policy=pair` already gives N = 1)."""
        scenes = torch.arange(batch["lr"].shape[0], device=self.device)
        pick = torch.multinomial(batch["lr_valid"].float(), 1, generator=generator).squeeze(1)
        image = self.condition_image(batch["lr"][scenes, pick])
        return metadata_condition(image, batch["gsd"], self.network.scalars), batch["dt"][scenes, pick]
