"""`FromPriorTask`: what every conditional stage (SatDiffMoE, ControlNet, DiffusionSat) shares.

Each starts from the prior stage (`init.prior_ckpt`, or a local diffusers UNet folder), works in the
latent space the prior was trained in, and sees the LR through the same condition encoder (its
pipeline's `condition_image`) — the comparison between methods is fair only if the LR reaches each
of them the same way.
"""

from __future__ import annotations

from diffusers import AutoencoderKL

from ..models.denoisers import UNetDenoiser
from ..models.unet import load_pretrained_unet
from .base import DiffusionTask


class FromPriorTask(DiffusionTask):
    def prior_task(self) -> DiffusionTask:
        """The prior task named by `init.prior_ckpt`, loaded once (kept out of the module tree)."""
        if not hasattr(self, "_prior_holder"):
            from .checkpoints import load_task

            self._prior_holder = (load_task(self.cfg.init.prior_ckpt, expect_stage="prior"),)
        return self._prior_holder[0]

    def prior_network(self) -> UNetDenoiser | None:
        """The prior's denoiser from `init.prior_ckpt` or `model.unet.pretrained`; None when neither is set.
        Drops the loaded prior task afterwards: only its weights are needed from here on."""
        if self.cfg.init.prior_ckpt:
            network = self.prior_task().network
            del self._prior_holder
            return network
        if self.cfg.model.unet.pretrained:
            return UNetDenoiser.from_unet(load_pretrained_unet(self.cfg.model.unet.pretrained))
        return None

    def configure_vae(self, networks: dict | None) -> AutoencoderKL:
        """With `init.prior_ckpt`: the VAE (and latent scale) the prior was trained on, whatever
        `init.vae_ckpt` says."""
        if networks is None and self.cfg.init.prior_ckpt:
            prior = self.prior_task()
            self.vae = prior.vae
            self.set_latent_scale(prior.latent_scale)
            return prior.vae
        return super().configure_vae(networks)
