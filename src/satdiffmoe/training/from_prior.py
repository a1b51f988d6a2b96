"""`FromPriorTask`: what every conditional stage (SatDiffMoE, ControlNet, DiffusionSat) shares.

Each starts from the prior stage (`init.prior_ckpt`, or a local diffusers UNet folder), works in the
latent space the prior was trained in, and sees the LR through the same condition encoder (its
pipeline's `condition_image`) — the comparison between methods is fair only if the LR reaches each
of them the same way.
"""

from __future__ import annotations

from diffusers import AutoencoderKL

from ..errors import UserError
from ..models.denoisers import SDUNetDenoiser, UNetDenoiser
from ..models.stable_diffusion import SDConditionalUNet
from ..models.trainable import merge_lora
from ..models.unet import load_pretrained_unet
from .base import DiffusionTask


class FromPriorTask(DiffusionTask):
    """The conditional stages' shared start: the prior's VAE, schedule and weights (`prior_network`);
    the baselines keep that prior frozen and steer it (`load_prior`)."""

    def prior_task(self) -> DiffusionTask:
        """The prior task named by `init.prior_ckpt`, loaded once (kept out of the module tree)."""
        if not hasattr(self, "_prior_holder"):
            from .checkpoints import load_task

            self._prior_holder = (load_task(self.cfg.init.prior_ckpt, expect_stage="prior"),)
        return self._prior_holder[0]

    def prior_network(self) -> UNetDenoiser | SDUNetDenoiser | None:
        """The prior's denoiser from `init.prior_ckpt` or `model.unet.pretrained` (a UNet2DModel folder, or a
        Stable Diffusion one); None when neither is set. Drops the loaded prior task afterwards: only its
        weights are needed from here on."""
        cfg = self.cfg
        if cfg.init.prior_ckpt:
            network = self.prior_task().network
            del self._prior_holder
            merge_lora(network)  # a LoRA prior's adapters folded into its weights before it is copied
            return network
        backbone = self.sd_backbone()
        if backbone is not None:
            return SDUNetDenoiser.from_model(SDConditionalUNet.from_pretrained_backbone(
                backbone, prompt=cfg.model.prompt, null_tokens=cfg.model.null_tokens))
        if self.cfg.model.unet.pretrained:
            return UNetDenoiser.from_unet(load_pretrained_unet(self.cfg.model.unet.pretrained))
        return None

    def scheduler_config_for(self, networks: dict | None) -> dict:
        """With `init.prior_ckpt`: the noise schedule the prior was trained with."""
        if networks is None and self.cfg.init.prior_ckpt:
            return dict(self.prior_task().noise_scheduler.config)
        return super().scheduler_config_for(networks)

    def configure_vae(self, networks: dict | None) -> AutoencoderKL:
        """With `init.prior_ckpt`: the VAE (and latent scale) the prior was trained on, whatever
        `init.vae_ckpt` says."""
        if networks is None and self.cfg.init.prior_ckpt:
            prior = self.prior_task()
            self.vae = prior.vae
            self.set_latent_scale(prior.latent_scale)
            return prior.vae
        return super().configure_vae(networks)

    def load_prior(self) -> UNetDenoiser | SDUNetDenoiser:
        """The prior to control: the prior stage's checkpoint (`init.prior_ckpt`) or a local UNet folder."""
        cfg = self.cfg
        prior = self.prior_network()
        if prior is None:
            raise UserError(f"stage={cfg.stage} needs the prior it controls: set init.prior_ckpt=<prior run folder "
                            "or .ckpt> (the same one SatDiffMoE starts from) or model.unet.pretrained=<folder>")
        if prior.unet.config.in_channels != self.vae.config.latent_channels:
            raise UserError(f"the prior takes {prior.unet.config.in_channels} channels but the VAE has "
                            f"{self.vae.config.latent_channels} latent channels; use the prior trained on this VAE")
        return prior

    @staticmethod
    def legacy_prior_config(networks: dict) -> dict:
        """The prior's denoiser config from a checkpoint written before models/denoisers.py."""
        return {"unet_config": networks["unet"], "cond_channels": 0, "scalar_names": list(networks["prior_scalars"])}
