"""`stage: prior` — an HR-only latent diffusion model, the stand-in for a pretrained Stable Diffusion.

Every conditional model (SatDiffMoE, ControlNet, DiffusionSat) starts from this one. With
`model.metadata_embedding` the HR's GSD is embedded (sinusoid + MLP) and added to the timestep
embedding, DiffusionSat-style; `model.unet.pretrained` loads a local diffusers UNet2DModel folder.
"""

from __future__ import annotations

from typing import Any

import torch

from ..models.autoencoder import downsampling_factor
from ..models.denoisers import SDUNetDenoiser, UNetDenoiser
from ..models.stable_diffusion import SDConditionalUNet
from ..models.unet import build_unet, load_pretrained_unet, with_extra_inputs
from ..pipelines.satdiffmoe import metadata_condition
from .base import Cond, DiffusionTask


class PriorTask(DiffusionTask):
    stage = "prior"
    validation_metrics = ("val/loss", "val/psnr", "val/ssim")
    default_monitor = ("val/loss", "min")  # unconditional samples do not match their HR: PSNR says little
    uses_condition_dropout = False
    default_denoiser = "UNetDenoiser"

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return ("gsd",) if self.cfg.model.metadata_embedding else ()

    def configure_network(self, networks: dict | None) -> UNetDenoiser | SDUNetDenoiser:
        cfg = self.cfg
        if networks is not None:
            # checkpoints written before models/denoisers.py stored the bare UNet's config
            return self.stored_denoiser(networks) or UNetDenoiser(unet_config=networks["unet"],
                                                                  scalar_names=list(self.scalar_names))
        backbone = self.sd_backbone()
        if backbone is not None:
            return SDUNetDenoiser.from_model(SDConditionalUNet.from_pretrained_backbone(
                backbone, 0, self.scalar_names, prompt=cfg.model.prompt, null_tokens=cfg.model.null_tokens))
        if cfg.model.unet.pretrained:
            unet = load_pretrained_unet(cfg.model.unet.pretrained)
            if self.scalar_names and unet.config.class_embed_type != "identity":
                unet = with_extra_inputs(unet, 0, class_embedding=True)
        else:
            latent_channels = self.vae.config.latent_channels
            side = cfg.data.hr_size // downsampling_factor(self.vae)
            unet = build_unet(cfg.model.unet, latent_channels, latent_channels, side,
                              class_embedding=bool(self.scalar_names))
        return UNetDenoiser.from_unet(unet, cond_channels=0, scalar_names=self.scalar_names)

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, None]:
        return metadata_condition(None, batch["gsd"], self.network.scalars), None
