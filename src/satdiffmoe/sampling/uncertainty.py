"""The fused sampler's per-pixel uncertainty map (`sampler.uncertainty`), B×1×H×W at the image size.

The branches of a scene see different LRs; where their estimates disagree the consensus is least
constrained. Each definition below is a spread over the valid branches (population std, ddof 0):

* `latent`: sqrt(mean_k Var_i x0_i) over every fusion step k, per latent pixel and channel, averaged
  over channels and upsampled (bilinear) to the image size; (scaled) latent units, where the prior has
  unit variance. Free: no decode. With fusion off, the spread of the final branch estimates.
* `pixel`: sqrt(mean_k Var_i D(x0_i)) over the last `PIXEL_STEPS` fusion steps, on the decoded,
  clamped branch estimates, averaged over bands, in [0, 1] image units. The last step's estimates
  are decoded anyway (`SamplerOutput.branch_images`), so `PIXEL_STEPS` = 1 costs no extra decode; each
  earlier step costs B·N decodes.
* `latent+lr`, `pixel+lr`: the mean of that map and the LR stack's disagreement (the per-pixel std of
  the valid bicubic-upsampled LRs across dates, `data.lr_stack.bicubic_spread_of`), the LR term
  rescaled per image to the branch term's mean, so the mix stays in the branch term's units and
  neither term dominates by its scale. A scene whose branch term is zero everywhere (one branch) gets
  the LR term alone; one with a single LR, the branch term alone.

* `texture`: not a spread but where the output has detail: the per-pixel std of the output image
  over a `TEXTURE_WINDOW`² window (band mean, [0, 1] units). Free. On the quickstart model it ranks
  the error far better than any branch spread (README "Evaluation and metrics"): a briefly trained
  model's branches agree where it errs, and its error sits on edges and texture.

Spearman ρ and AUSE (evaluation/calibration.py) depend only on the order of the pixels, so a mix is
judged by the ranking it produces; README "Evaluation and metrics" has the measured numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from ..data.lr_stack import bicubic_spread_of
from ..errors import UserError
from .config import UNCERTAINTY_MAPS  # noqa: F401 (the options, listed beside the config field)

TEXTURE_WINDOW = 5  # px; measured on validation: 5 ranks the error better than 3 (README)
PIXEL_STEPS = 1  # fusion steps (from the last) whose decoded estimates the `pixel` spread covers


def branch_variance(x0: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """B×N×C×h×w estimates -> B×C×h×w variance across the valid branches of each scene."""
    weights = valid.to(x0.dtype)[:, :, None, None, None]
    count = weights.sum(1)
    mean = (x0 * weights).sum(1) / count
    return (((x0 - mean[:, None]) ** 2) * weights).sum(1) / count


def fusion_steps(steps: int, fusion_every: int | None) -> list[int]:
    """Indices of the steps that fuse: every `fusion_every`-th and always the last; none when off."""
    if not fusion_every:
        return []
    return [k for k in range(steps) if k % fusion_every == 0 or k == steps - 1]


def local_std(image: torch.Tensor, window: int = TEXTURE_WINDOW) -> torch.Tensor:
    """B×1×H×W: the std of each band over a window² neighbourhood (edges: the pixels inside), band mean,
    of a B×C×H×W image in [-1, 1], in [0, 1] units."""
    x = image.float() / 2
    mean = F.avg_pool2d(x, window, 1, window // 2, count_include_pad=False)
    square = F.avg_pool2d(x * x, window, 1, window // 2, count_include_pad=False)
    return (square - mean * mean).clamp_min(0).sqrt().mean(1, keepdim=True)


def mix(branch: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """The mean of two B×1×H×W maps, `lr` rescaled per image to `branch`'s mean (module docstring)."""
    branch_mean, lr_mean = branch.mean((1, 2, 3), keepdim=True), lr.mean((1, 2, 3), keepdim=True)
    scaled = lr * branch_mean / lr_mean.clamp_min(torch.finfo(lr.dtype).tiny)
    mixed = torch.where(lr_mean > 0, (branch + scaled) / 2, branch)
    return torch.where(branch_mean > 0, mixed, lr)


class BranchSpread:
    """Accumulates the branch spread during sampling (`add` at every step) and makes the map (`finish`)."""

    def __init__(self, kind: str, steps: int, fusion_every: int | None, decode: Callable[[torch.Tensor], torch.Tensor],
                 pixel_steps: int | None = None):
        self.space, _, extra = kind.partition("+")
        self.with_lr = extra == "lr"
        self.decode, self.last = decode, steps - 1
        fused = fusion_steps(steps, fusion_every)
        self.tracked = set(fused if self.space == "latent" else fused[-(pixel_steps or PIXEL_STEPS):]
                           if self.space == "pixel" else [])
        self.total: torch.Tensor | None = None
        self.count = 0

    def _add(self, variance: torch.Tensor) -> None:
        self.total = variance if self.total is None else self.total + variance
        self.count += 1

    def add(self, k: int, x0: torch.Tensor, valid: torch.Tensor) -> None:
        """Step k's B×N×C×h×w branch estimates (before fusion); only tracked steps count."""
        if k not in self.tracked or (self.space == "pixel" and k == self.last):
            return  # the last step's pixel spread is taken from the decoded branch images in `finish`
        if self.space == "latent":
            self._add(branch_variance(x0, valid))
            return
        rows = valid.flatten()
        decoded = self.decode(x0.flatten(0, 1)[rows]).clamp(-1, 1) / 2  # [0, 1] units
        images = decoded.new_zeros((rows.numel(),) + decoded.shape[1:])
        images[rows] = decoded
        self._add(branch_variance(images.view(*valid.shape, *decoded.shape[1:]), valid))

    def finish(self, x0_final: torch.Tensor, branch_images: torch.Tensor, valid: torch.Tensor,
               inputs: Any, image: torch.Tensor | None = None) -> torch.Tensor:
        """The B×1×H×W map from the accumulated spread, the final estimates and decoded branch images
        (B×N×C×H×W in [-1, 1]), for `+lr` the LR stack of `inputs` (a `BranchInputs`), for `texture`
        the output `image` (B×C×H×W in [-1, 1])."""
        if self.space == "texture":
            return local_std(image)
        if self.space == "pixel" and (self.last in self.tracked or not self.tracked):
            self._add(branch_variance(branch_images / 2, valid))
        elif self.count == 0:  # latent with fusion off: the spread of the final branch estimates
            self._add(branch_variance(x0_final, valid))
        size = tuple(branch_images.shape[-2:])
        uncertainty = (self.total / self.count).sqrt().mean(1, keepdim=True)
        if uncertainty.shape[-2:] != size:
            uncertainty = F.interpolate(uncertainty, size=size, mode="bilinear", align_corners=False).clamp_min(0)
        if self.with_lr:
            if inputs.lr is None:
                raise UserError(f"sampler.uncertainty={self.space}+lr needs the LR stack; this sampler has none")
            lr_valid = inputs.valid if inputs.lr_valid is None else inputs.lr_valid
            uncertainty = mix(uncertainty, bicubic_spread_of(inputs.lr, lr_valid, size).to(uncertainty))
        return uncertainty
