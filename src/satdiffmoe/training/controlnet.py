"""`stage: controlnet` — the ControlNet baseline: a frozen prior steered by one upsampled LR image.

Fair by construction (DESIGN.md section 5, "Baselines"): the same frozen VAE and prior checkpoint as
SatDiffMoE (`init.vae_ckpt`, `init.prior_ckpt`), the same latent condition E(upsample(LR)), the same
Δt embedding (`ScalarEmbedding`, here added to the ControlNet's timestep embedding), and the loss,
validation and logging inherited from `DiffusionTask`. Only the ControlNet and the Δt embedding
train; the prior's weights never change.

At evaluation a scene with N LR images becomes either one branch (the LR nearest in time, |Δt|
smallest) or, with `sampler.late_fusion=true`, N independent branches whose decoded samples are
averaged (the fused sampler with fusion off).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from diffusers import UNet2DModel
from omegaconf import OmegaConf
from torch import nn

from ..errors import UserError
from ..models.conditional_unet import ConditionalUNet
from ..models.controlnet import UNet2DControlNet, architecture, unet_forward_with_control
from ..models.time_embedding import ScalarEmbedding
from ..sampling.fused_sampler import BranchInputs
from .base import Cond, plain_config
from .from_prior import FromPriorTask

log = logging.getLogger(__name__)


def nearest_in_time(dt: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Index (B) of the valid LR with the smallest |Δt|; unknown Δt (NaN) ranks after every known one."""
    known_first = dt.abs().nan_to_num(nan=torch.finfo(dt.dtype).max)
    distance = torch.where(valid, known_first, torch.full_like(dt, float("inf")))  # padding never wins
    return distance.argmin(dim=1)


class ControlledPriorTask(FromPriorTask):
    """What both baselines share: a frozen prior (and its VAE and condition encoder, from
    `FromPriorTask`, exactly as SatDiffMoE sees them) that a control branch steers."""

    def load_prior(self, networks: dict | None) -> ConditionalUNet:
        """The frozen prior: rebuilt from stored configs (weights come with the state dict), or taken from
        the prior stage's checkpoint (`init.prior_ckpt`) or a local UNet2DModel folder."""
        cfg = self.cfg
        if networks is not None:
            prior = ConditionalUNet(UNet2DModel.from_config(networks["unet"]), 0, networks["prior_scalars"])
        else:
            prior = self.prior_network()
        if prior is None:
            raise UserError(f"stage={cfg.stage} needs the prior it controls: set init.prior_ckpt=<prior run folder "
                            "or .ckpt> (the same one SatDiffMoE starts from) or model.unet.pretrained=<folder>")
        if prior.unet.config.in_channels != self.vae.config.latent_channels:
            raise UserError(f"the prior takes {prior.unet.config.in_channels} channels but the VAE has "
                            f"{self.vae.config.latent_channels} latent channels; use the prior trained on this VAE")
        prior.requires_grad_(False)
        return prior.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.network["prior"].eval()  # frozen: its dropout stays off
        return self

    def network_configs(self) -> dict:
        prior = self.network["prior"]
        # `architecture` drops diffusers' bookkeeping keys: a VAE or prior loaded from a local folder
        # carries `_name_or_path` as a Path, which `load_task`'s weights_only=True read refuses.
        return {**super().network_configs(), "vae": plain_config(architecture(self.vae.config)),
                "unet": plain_config(architecture(prior.unet.config)),
                "prior_scalars": list(prior.scalars), "controlnet": plain_config(self.network["controlnet"].config)}

    def prior_class_labels(self, z_t: torch.Tensor, cond: Cond) -> torch.Tensor | None:
        """The prior's own scalar embeddings (its GSD, when it was trained with one), as ConditionalUNet adds them."""
        prior = self.network["prior"]
        if not prior.scalars:
            return None
        nan = torch.full((z_t.shape[0],), float("nan"), device=z_t.device)
        scalars = cond if isinstance(cond, dict) else {}
        return sum(emb(scalars.get(name, nan)) for name, emb in prior.scalars.items())


class ControlNetTask(ControlledPriorTask):
    stage = "controlnet"

    def configure_network(self, networks: dict | None) -> nn.ModuleDict:
        prior = self.load_prior(networks)
        if networks is not None:
            controlnet = UNet2DControlNet.from_config(networks["controlnet"])
        else:
            controlnet = UNet2DControlNet.from_unet(prior.unet, conditioning_channels=self.cond_channels)
        modules = {"prior": prior, "controlnet": controlnet}
        if self.cfg.model.dt_embedding:
            modules["dt_embedding"] = ScalarEmbedding(controlnet.time_embed_dim)
        return nn.ModuleDict(modules)

    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, torch.Tensor]:
        """One LR per scene: with `train_lr_policy=pair` the datamodule already picked it; otherwise a
        random valid one."""
        valid = batch["lr_valid"]
        scores = torch.rand(valid.shape, generator=generator, device=valid.device).masked_fill(~valid, -1.0)
        index = scores.argmax(dim=1)
        rows = torch.arange(valid.shape[0], device=valid.device)
        return self._cond(batch["lr"][rows, index], batch["gsd"]), batch["dt"][rows, index]

    def _cond(self, lr: torch.Tensor, gsd: torch.Tensor) -> dict[str, torch.Tensor]:
        cond = {"image": self.condition_image(lr)}
        if self.network["prior"].scalars:
            cond["gsd"] = gsd.expand(lr.shape[0]) if gsd.ndim == 0 else gsd
        return cond

    def denoise(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor | None) -> torch.Tensor:
        rows = z_t.shape[0]
        if cond is None:  # unconditional = what condition dropout trains: zero image, unknown Δt
            image = torch.zeros((rows, self.network["controlnet"].config.conditioning_channels, *z_t.shape[2:]),
                                device=z_t.device, dtype=z_t.dtype)
            dt = torch.full((rows,), float("nan"), device=z_t.device)
        else:
            image = cond["image"]
        extra = None
        if "dt_embedding" in self.network:
            dt = dt if dt is not None else torch.full((rows,), float("nan"), device=z_t.device)
            extra = self.network["dt_embedding"](dt)
        control = self.network["controlnet"](z_t, t, image, extra_emb=extra,
                                             conditioning_scale=self.cfg.model.controlnet.conditioning_scale)
        return unet_forward_with_control(self.network["prior"].unet, z_t, t, control,
                                         class_labels=self.prior_class_labels(z_t, cond))

    def branch_inputs(self, batch: dict[str, Any], late_fusion: bool | None = None) -> BranchInputs:
        """Nearest-in-time LR (N = 1), or every LR as its own branch for late fusion."""
        if late_fusion is None:
            late_fusion = bool(self.cfg.sampler.late_fusion)
        lr, valid, dt = batch["lr"], batch["lr_valid"], batch["dt"]
        scenes, branches = valid.shape
        if late_fusion:
            images = self.condition_image(lr.flatten(0, 1)).unflatten(0, (scenes, branches))
            cond = {"image": images}
            if self.network["prior"].scalars:
                cond["gsd"] = batch["gsd"][:, None].expand(scenes, branches)
            return BranchInputs(cond=cond, dt=dt, valid=valid, lr=lr, lr_mask=batch["lr_mask"])
        rows = torch.arange(scenes, device=lr.device)
        index = nearest_in_time(dt, valid)
        cond = {key: value[:, None] for key, value in self._cond(lr[rows, index], batch["gsd"]).items()}
        return BranchInputs(cond=cond, dt=dt[rows, index][:, None], valid=valid[rows, index][:, None],
                            lr=lr[rows, index][:, None], lr_mask=batch["lr_mask"][rows, index][:, None])

    def sample(self, batch: dict[str, Any], sampler_cfg: Any, generator: torch.Generator | None = None):
        """Late fusion = independent branches averaged after decoding: the fused sampler with fusion off."""
        from ..sampling.fused_sampler import FusedSampler

        late_fusion = bool(sampler_cfg.get("late_fusion", False))
        if late_fusion and sampler_cfg.get("fusion_every"):
            sampler_cfg = OmegaConf.merge(sampler_cfg, {"fusion_every": None})
        sampler = FusedSampler.for_task(self, sampler_cfg)
        return sampler.sample(self.branch_inputs(batch, late_fusion), self.latent_shape, generator)
