"""Non-generative reference methods, evaluated by the same code as the models (docs/baselines.md).

* `bicubic_nearest`: bicubic upsampling of the LR nearest in time to the HR (first valid LR when
  every Δt is unknown).
* `mean_bicubic`: per-pixel mean of the bicubic-upsampled LRs, weighted by their cloud masks (equal
  weights where every LR is masked).
* `AutoencoderReconstruction`: a latent model's VAE applied to the HR itself (evaluated beside the
  model by `evaluate` with `eval.references`).

The references upsample the LR bands as they are, so a multispectral LR comes in as its HR bands
(`data.lr_stack.lr_rgb_view(batch, cfg.data.lr_rgb)`, which the `Evaluator` applies).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..data.lr_stack import bicubic_upsample, mean_bicubic_of, nearest_in_time


def bicubic_nearest(batch: dict[str, Any]) -> torch.Tensor:
    """Bicubic upsampling of the LR nearest in time (the first valid LR when every Δt is unknown)."""
    lr = batch["lr"]
    nearest = lr[torch.arange(lr.shape[0], device=lr.device), nearest_in_time(batch["dt"], batch["lr_valid"])]
    return bicubic_upsample(nearest, tuple(batch["hr"].shape[-2:]))


def mean_bicubic(batch: dict[str, Any]) -> torch.Tensor:
    return mean_bicubic_of(batch["lr"], batch["lr_valid"], batch.get("lr_mask"), tuple(batch["hr"].shape[-2:]))


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
    eval_name = "autoencoder_reconstruction"  # eval/autoencoder_reconstruction_n<K>.json, as the other references
    produces_uncertainty = False
    uses_sampler = False

    def __init__(self, model: Any):
        super().__init__()
        self.vae = model.vae  # only the VAE (of a pipeline or task): the parameter count is the autoencoder's

    @torch.no_grad()
    def sample(self, batch: dict[str, Any], sampler_cfg: Any = None, generator: Any = None) -> ReferenceOutput:
        latent = self.vae.encode(batch["hr"].to(self.vae.dtype)).latent_dist.mode()  # the latent scale cancels
        return ReferenceOutput(self.vae.decode(latent).sample.clamp(-1, 1))
