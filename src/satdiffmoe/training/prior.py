"""`stage: prior` — an HR-only latent diffusion model, the stand-in for a pretrained Stable Diffusion.

Every conditional model (SatDiffMoE, ControlNet, DiffusionSat) starts from this one. With
`model.metadata_embedding` the HR's GSD is embedded (sinusoid + MLP) and added to the timestep
embedding, DiffusionSat-style; `model.unet.pretrained` loads a local diffusers UNet2DModel folder.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import UNet2DModel

from ..models.conditional_unet import ConditionalUNet
from ..models.unet import build_unet, load_pretrained_unet, with_extra_inputs
from ..sampling.fused_sampler import BranchInputs
from .base import Cond, DiffusionTask, plain_config


class PriorTask(DiffusionTask):
    stage = "prior"
    validation_metrics = ("val/loss", "val/psnr", "val/ssim")
    default_monitor = ("val/loss", "min")  # unconditional samples do not match their HR: PSNR says little
    uses_condition_dropout = False

    @property
    def scalar_names(self) -> tuple[str, ...]:
        return ("gsd",) if self.cfg.model.metadata_embedding else ()

    def configure_network(self, networks: dict | None) -> ConditionalUNet:
        cfg = self.cfg
        latent_channels, side, _ = self.latent_shape
        if networks is not None:
            unet = UNet2DModel.from_config(networks["unet"])
        elif cfg.model.unet.pretrained:
            unet = load_pretrained_unet(cfg.model.unet.pretrained)
            if self.scalar_names and unet.config.class_embed_type != "identity":
                unet = with_extra_inputs(unet, 0, class_embedding=True)
        else:
            unet = build_unet(cfg.model.unet, latent_channels, latent_channels, side,
                              class_embedding=bool(self.scalar_names))
        return ConditionalUNet(unet, cond_channels=0, scalar_names=self.scalar_names)

    def network_configs(self) -> dict:
        return {**super().network_configs(), "unet": plain_config(self.network.unet.config)}

    def _metadata(self, gsd: torch.Tensor) -> Cond:
        return {"gsd": gsd} if self.scalar_names else None

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, None]:
        return self._metadata(batch["gsd"]), None

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor | None) -> torch.Tensor:
        return self.network(z_t, t, scalars=cond)

    def branch_inputs(self, batch: dict[str, Any]) -> BranchInputs:
        """One unconditional branch per scene (the first LR rides along for references)."""
        scenes = batch["hr"].shape[0]
        gsd = batch["gsd"][:, None]
        return BranchInputs(cond=self._metadata(gsd), dt=torch.zeros(scenes, 1, device=self.device),
                            valid=torch.ones(scenes, 1, dtype=torch.bool, device=self.device),
                            lr=batch["lr"][:, :1], lr_mask=batch["lr_mask"][:, :1])
