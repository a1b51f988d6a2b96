"""`stage: autoencoder` — an AutoencoderKL trained on HR images and bicubic-upsampled LR images.

Loss = L1 reconstruction + `train.perceptual_weight`·LPIPS + `train.kl_weight`·KL (the Stable
Diffusion VAE recipe without its GAN term: the LPIPS term keeps textures that L1 alone blurs away). Every validation also measures the latent scale
(1/std of the latents of the validation scenes, as Stable Diffusion's 0.18215 was measured), writes
it into the VAE config and the checkpoint, so the diffusion stages get unit-variance latents.
With `model.vae.pretrained` there is nothing to train: later stages load that folder directly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from omegaconf import DictConfig

from ..data.lr_stack import bicubic_upsample, lr_rgb_view
from ..errors import UserError
from ..evaluation.metrics import lpips_unavailable
from ..models.autoencoder import build_vae
from ..models.portable import portable_config
from .base import SatTask


class AutoencoderTask(SatTask):
    stage = "autoencoder"
    validation_metrics = ("val/loss", "val/psnr", "val/ssim", "val/lpips")
    default_monitor = ("val/psnr", "max")

    def __init__(self, config: dict | DictConfig, networks: dict | None = None):
        super().__init__(config, networks)
        if networks is not None:
            self.vae = AutoencoderKL.from_config(networks["vae"])
        elif self.cfg.model.vae.pretrained:
            raise UserError("model.vae.pretrained is set, so there is no autoencoder to train; "
                            "run stage=prior (it loads that folder) or unset model.vae.pretrained")
        else:
            self.vae = build_vae(self.cfg.model.vae, self.cfg.data.channels)
        self.set_latent_scale(self.cfg.model.vae.scaling_factor or self.vae.config.scaling_factor)
        self._latent_moments = []
        if self.cfg.train.perceptual_weight > 0:
            reason = lpips_unavailable(self.cfg.eval.lpips_weights, self.cfg.data.channels, self.cfg.data.hr_size)
            if reason:
                raise UserError(f"train.perceptual_weight={self.cfg.train.perceptual_weight} needs LPIPS: {reason}; "
                                "or set train.perceptual_weight=0")
        if self.cfg.train.compile:
            # the VAE is this stage's network; training calls vae.encode/decode, never vae(), so its encoder
            # and decoder are what run compiled (in place: the state_dict keys stay)
            self.vae.encoder.compile()
            self.vae.decoder.compile()
        self.finish_init()

    def network_configs(self) -> dict:
        return {"vae": portable_config(self.vae.config)}

    def training_images(self, batch: dict[str, Any]) -> torch.Tensor:
        """HR images plus (`train.autoencoder_lr_images`) one upsampled LR per scene: the latent
        condition encodes upsampled LRs too."""
        if not self.cfg.train.autoencoder_lr_images:
            return batch["hr"]
        # the LR bands that observe the HR's (multispectral LR: data.lr_rgb); the VAE is the HR's
        lr = bicubic_upsample(lr_rgb_view(batch, self.cfg.data.get("lr_rgb"))["lr"][:, 0], batch["hr"].shape[-1])
        return torch.cat([batch["hr"], lr])

    def reconstruction_loss(self, images: torch.Tensor, sample: bool) -> tuple:
        posterior = self.vae.encode(images).latent_dist
        latents = posterior.sample() if sample else posterior.mode()
        reconstruction = self.vae.decode(latents).sample
        rec = F.l1_loss(reconstruction.float(), images.float())
        kl = posterior.kl().mean() / images[0].numel()  # per pixel, like the L1 term
        loss = rec + self.cfg.train.kl_weight * kl
        weight = self.cfg.train.perceptual_weight
        if weight > 0:
            loss = loss + weight * self.load_lpips_network()(reconstruction.float(), images.float()).mean()
        return loss, rec, kl, reconstruction, latents

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images = self.training_images(batch)
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss, rec, kl, _, _ = self.reconstruction_loss(images, sample=True)
        size = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({"train/rec": rec, "train/kl": kl}, batch_size=size)
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hr = batch["hr"]
        loss, _, _, reconstruction, latents = self.reconstruction_loss(hr, sample=False)
        size = hr.shape[0]
        self.val_loss.update(loss.detach(), weight=size)
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=size)
        self.log_fidelity(reconstruction.clamp(-1, 1), hr)
        latents = latents.float()
        self._latent_moments.append(torch.stack([latents.sum(), latents.square().sum(),
                                                 torch.tensor(float(latents.numel()), device=latents.device)]))
        if batch_idx == 0:
            self.log_grid("val/reconstructions", [hr, reconstruction.clamp(-1, 1)], caption="HR | reconstruction")

    def on_validation_epoch_end(self) -> None:
        if not self._latent_moments or self.cfg.model.vae.scaling_factor:
            self._latent_moments.clear()
            return
        total, squares, count = self.all_gather(torch.stack(self._latent_moments).sum(0)).reshape(-1, 3).sum(0)
        self._latent_moments.clear()
        std = (squares / count - (total / count) ** 2).clamp_min(1e-12).sqrt()
        self.set_latent_scale(1.0 / float(std))
        self.log("val/latent_scale", self.latent_scale)
