"""Non-generative reference methods, evaluated by the same code as the models (DESIGN.md section 5).

* `bicubic_nearest`: bicubic upsampling of the LR nearest in time to the HR (first valid LR when
  every Δt is unknown).
* `mean_bicubic`: per-pixel mean of the bicubic-upsampled LRs, weighted by their cloud masks (equal
  weights where every LR is masked).
* `AutoencoderReconstruction`: a latent model's VAE applied to the HR itself (evaluated beside the
  model by `evaluate` with `eval.references`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


def _bicubic(lr: torch.Tensor, size: tuple) -> torch.Tensor:
    return F.interpolate(lr.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def bicubic_nearest(batch: dict[str, Any]) -> torch.Tensor:
    lr, valid, dt = batch["lr"], batch["lr_valid"].bool(), batch["dt"].float()
    distance = torch.where(valid & torch.isfinite(dt), dt.abs(), torch.full_like(dt, float("inf")))
    distance = torch.where(valid, distance, torch.full_like(dt, float("nan")))
    # nan_to_num puts padding after unknown Δt, so argmin picks: nearest known, else first valid
    index = torch.nan_to_num(distance, nan=float("inf"), posinf=1e30).argmin(1)
    index = torch.where(torch.isfinite(distance).any(1), index, valid.float().argmax(1))
    nearest = lr[torch.arange(lr.shape[0], device=lr.device), index]
    return _bicubic(nearest, tuple(batch["hr"].shape[-2:]))


def mean_bicubic(batch: dict[str, Any]) -> torch.Tensor:
    return mean_bicubic_of(batch["lr"], batch["lr_valid"], batch.get("lr_mask"), tuple(batch["hr"].shape[-2:]))


def mean_bicubic_of(lr: torch.Tensor, lr_valid: torch.Tensor, lr_mask: torch.Tensor | None,
                    size: tuple) -> torch.Tensor:
    """The cloud-masked mean of the bicubic-upsampled LRs (B×N×C×h×w) at `size` (H, W)."""
    valid = lr_valid.bool()
    batch_size, branches = valid.shape
    upsampled = _bicubic(lr.flatten(0, 1), size).view(batch_size, branches, lr.shape[2], *size)
    mask = torch.ones_like(lr[:, :, 0]) if lr_mask is None else lr_mask.float()
    weights = F.interpolate(mask, size=size, mode="nearest")[:, :, None] * valid[:, :, None, None, None].float()
    equal = valid[:, :, None, None, None].float().expand_as(weights)
    weights = torch.where(weights.sum(1, keepdim=True) > 0, weights, equal)
    return (weights * upsampled).sum(1) / weights.sum(1)


REFERENCES: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {
    "bicubic_nearest": bicubic_nearest,
    "mean_bicubic": mean_bicubic,
}


@dataclass
class ReferenceOutput:
    image: torch.Tensor
    uncertainty: None = None
    nfe: int = 0


class AutoencoderReconstruction(torch.nn.Module):
    """D(E(HR)) with a latent model's own VAE: the cap every latent method works under.

    It sees the HR, so it is not a super-resolution method; the method table shows it as the
    reference that tells how much of a latent method's error the autoencoder already makes.
    """

    stage = "autoencoder"
    eval_name = "autoencoder_reconstruction"
    produces_uncertainty = False

    def __init__(self, task: torch.nn.Module):
        super().__init__()
        self.vae = task.vae  # only the VAE: the table's parameter count is the autoencoder's

    @torch.no_grad()
    def sample(self, batch: dict[str, Any], sampler_cfg: Any = None, generator: Any = None) -> ReferenceOutput:
        latent = self.vae.encode(batch["hr"].to(self.vae.dtype)).latent_dist.mode()  # the latent scale cancels
        return ReferenceOutput(self.vae.decode(latent).sample.clamp(-1, 1))
