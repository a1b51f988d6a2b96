"""`stage: satdiffmoe` — the conditional LDM p(HR | one LR, Δt) of SatDiffMoE (DESIGN.md §5).

UNet input = concat(z_t, c): latent conditioning c = E(bicubic-upsample(LR))·scale, pixel conditioning
c = LR resized to the latent size. Δt enters through `ScalarEmbedding` added to the timestep
embedding. The network starts as a copy of the prior (`init.prior_ckpt`, which also carries the VAE
the prior was trained on) with zero-initialised new inputs, so step 0 computes exactly the prior.
At sampling every LR of a scene is one branch; the fused sampler pulls the branches together.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import UNet2DModel

from ..models.conditional_unet import ConditionalUNet
from ..models.unet import build_unet
from ..sampling.fused_sampler import BranchInputs
from .base import Cond, plain_config
from .from_prior import FromPriorTask

log = logging.getLogger(__name__)


class SatDiffMoETask(FromPriorTask):
    stage = "satdiffmoe"

    @property
    def scalar_names(self) -> tuple[str, ...]:
        names = ("dt",) if self.cfg.model.dt_embedding else ()
        return names + (("gsd",) if self.cfg.model.metadata_embedding else ())

    def configure_network(self, networks: dict | None) -> ConditionalUNet:
        cfg = self.cfg
        if networks is not None:
            return ConditionalUNet(UNet2DModel.from_config(networks["unet"]), self.cond_channels, self.scalar_names)
        prior = self.prior_network()
        if prior is None:
            log.warning("no init.prior_ckpt or model.unet.pretrained: training the conditional UNet from scratch")
            channels, side, _ = self.latent_shape
            unet = build_unet(cfg.model.unet, channels + self.cond_channels, channels, side,
                              class_embedding=bool(self.scalar_names))
            return ConditionalUNet(unet, self.cond_channels, self.scalar_names)
        return ConditionalUNet.from_prior(prior, self.cond_channels, self.scalar_names)

    def network_configs(self) -> dict:
        return {**super().network_configs(), "unet": plain_config(self.network.unet.config)}

    # ---------------------------------------------------------------------------------- condition
    def _cond(self, image: torch.Tensor, gsd: torch.Tensor) -> Cond:
        return {"image": image, "gsd": gsd} if self.cfg.model.metadata_embedding else image

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator):
        """One valid LR per scene, drawn at random (`data.train_lr_policy=pair` already gives N = 1)."""
        scenes = torch.arange(batch["lr"].shape[0], device=self.device)
        pick = torch.multinomial(batch["lr_valid"].float(), 1, generator=generator).squeeze(1)
        image = self.condition_image(batch["lr"][scenes, pick])
        return self._cond(image, batch["gsd"]), batch["dt"][scenes, pick]

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor | None) -> torch.Tensor:
        rows = z_t.shape[0]
        if cond is None:  # unconditional = what condition dropout trained: zeros and "unknown" Δt
            image = torch.zeros(rows, self.cond_channels, *z_t.shape[-2:], device=z_t.device, dtype=z_t.dtype)
            scalars = {}
        else:
            image = cond["image"] if isinstance(cond, dict) else cond
            scalars = {"dt": dt} if dt is not None else {}
            if isinstance(cond, dict) and "gsd" in cond:
                scalars["gsd"] = cond["gsd"]
        return self.network(z_t, t, image, scalars)

    def branch_inputs(self, batch: dict[str, Any]) -> BranchInputs:
        """One branch per LR image; padding slots get a zero condition and are skipped by the sampler."""
        lr, valid = batch["lr"], batch["lr_valid"]
        scenes, branches = valid.shape
        rows = valid.flatten()
        flat = lr.flatten(0, 1)[rows]
        chunk = self.cfg.sampler.chunk_size
        encoded = torch.cat([self.condition_image(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])
        image = torch.zeros(scenes * branches, *encoded.shape[1:], device=encoded.device, dtype=encoded.dtype)
        image[rows] = encoded
        image = image.view(scenes, branches, *encoded.shape[1:])
        gsd = batch["gsd"][:, None].expand(scenes, branches)
        return BranchInputs(cond=self._cond(image, gsd), dt=batch["dt"], valid=valid,
                            lr=lr, lr_mask=batch["lr_mask"])
