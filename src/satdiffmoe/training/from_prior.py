"""`FromPriorTask`: what every conditional stage (SatDiffMoE, ControlNet, DiffusionSat) shares.

Each starts from the prior stage (`init.prior_ckpt`, or a local diffusers UNet folder), works in the
latent space the prior was trained in, and sees the LR through the same condition encoder — the
comparison between methods is fair only if the LR reaches each of them the same way.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

from ..models.conditional_unet import ConditionalUNet
from ..models.unet import load_pretrained_unet
from .base import DiffusionTask, upsample_lr


class FromPriorTask(DiffusionTask):
    @property
    def cond_channels(self) -> int:
        if self.cfg.model.conditioning == "latent":
            return self.vae.config.latent_channels
        return self.cfg.data.channels

    def prior_task(self) -> DiffusionTask:
        """The prior task named by `init.prior_ckpt`, loaded once (kept out of the module tree)."""
        if not hasattr(self, "_prior_holder"):
            from .checkpoints import load_task

            self._prior_holder = (load_task(self.cfg.init.prior_ckpt, expect_stage="prior"),)
        return self._prior_holder[0]

    def prior_network(self) -> ConditionalUNet | None:
        """The prior's network from `init.prior_ckpt` or `model.unet.pretrained`; None when neither is set.
        Drops the loaded prior task afterwards: only its weights are needed from here on."""
        if self.cfg.init.prior_ckpt:
            network = self.prior_task().network
            del self._prior_holder
            return network
        if self.cfg.model.unet.pretrained:
            return ConditionalUNet(load_pretrained_unet(self.cfg.model.unet.pretrained))
        return None

    def configure_vae(self, networks: dict | None) -> AutoencoderKL:
        """With `init.prior_ckpt`: the VAE (and latent scale) the prior was trained on, whatever
        `init.vae_ckpt` says."""
        if networks is None and self.cfg.init.prior_ckpt:
            prior = self.prior_task()
            self.latent_scale = prior.latent_scale
            return prior.vae
        return super().configure_vae(networks)

    def condition_image(self, lr: torch.Tensor) -> torch.Tensor:
        """LR rows (R×C×h×w) -> condition rows (R×C'×h'×w') at the latent size."""
        if self.cfg.model.conditioning == "latent":
            return self.encode(upsample_lr(lr, self.cfg.data.hr_size), sample=False)
        side = self.latent_shape[1]
        return F.interpolate(lr.float(), size=(side, side), mode="area")
