"""Consensus rules: how N per-branch clean-latent estimates become one (README, "Sampling").

Each rule is one plain function `rule(x0, context) -> x0_bar` with `x0` shaped B×N×C×h×w and the
result B×C×h×w; `CONSENSUS_RULES` maps the config value `sampler.consensus` to it. Adding a rule =
adding one function and one registry entry (config validation reads the names from here).

Padding branches (`valid=False`) get weight zero in every rule, so they never contribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import UserError

Decoder = Callable[[torch.Tensor], torch.Tensor]  # latent B×C×h×w -> image B×C×H×W in [-1, 1]


@dataclass
class FusionContext:
    """Everything a rule may use besides the estimates themselves (shapes with leading B×N)."""

    valid: torch.Tensor  # B×N bool
    dt: torch.Tensor | None = None  # B×N days, NaN = unknown
    lr: torch.Tensor | None = None  # B×M×C×h×w in [-1, 1]
    lr_mask: torch.Tensor | None = None  # B×M×h×w, 1 = clear pixel
    lr_valid: torch.Tensor | None = None  # B×M bool: observations not tied to branches; None: M = N, `valid`
    tau: float = 180.0
    decode: Decoder | None = None  # None: latent space is image space
    optimize_steps: int = 5
    optimize_lr: float = 0.1
    dc_weight: float = 1.0


def weighted_mean(x0: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i x0_i / Σ_i w_i with `weights` B×N (per branch) or B×N×1×h×w (per pixel)."""
    while weights.dim() < x0.dim():
        weights = weights.unsqueeze(-1)
    weights = weights.to(x0.dtype)
    return (weights * x0).sum(1) / weights.sum(1).clamp_min(torch.finfo(x0.dtype).tiny)


def time_weights(context: FusionContext) -> torch.Tensor:
    """w_i ∝ exp(−|Δt_i|/τ) per branch; an unknown Δt gets the mean weight of the known ones."""
    valid = context.valid
    if context.dt is None:
        return valid.float()
    dt_abs = context.dt.abs().float()
    known = valid & torch.isfinite(dt_abs)
    # Shift by the smallest |Δt| per scene: the same ratios, but no underflow to all-zero weights
    # when every Δt is many τ away (years-old archives).
    nearest = torch.where(known, dt_abs, torch.full_like(dt_abs, math.inf)).amin(1, keepdim=True)
    nearest = torch.where(torch.isfinite(nearest), nearest, torch.zeros_like(nearest))
    weights = torch.where(known, torch.exp(-(dt_abs - nearest) / context.tau), torch.zeros_like(dt_abs))
    num_known = known.sum(1, keepdim=True)
    mean_known = torch.where(num_known > 0, weights.sum(1, keepdim=True) / num_known.clamp_min(1),
                             torch.ones_like(nearest))
    unknown = valid & ~torch.isfinite(dt_abs)
    return torch.where(unknown, mean_known.expand_as(weights), weights)


def mask_weights(context: FusionContext, latent_size: tuple[int, int]) -> torch.Tensor:
    """Per-pixel weights B×N×1×h×w: the clear fraction of each latent pixel's LR footprint."""
    valid = context.valid.float()
    if context.lr_mask is None or context.lr_valid is not None:  # no mask belongs to a branch
        return valid[:, :, None, None, None].expand(-1, -1, 1, *latent_size)
    batch, branches = context.lr_mask.shape[:2]
    if (batch, branches) != tuple(context.valid.shape):
        raise UserError(f"mask_weighted consensus needs one LR mask per branch: masks {tuple(context.lr_mask.shape)}"
                        f" vs branches {tuple(context.valid.shape)}; use consensus=mean for this model")
    # area resizing turns a binary mask into "fraction of clear pixels" at any scale, up or down
    masks = F.interpolate(context.lr_mask.float().flatten(0, 1)[:, None], size=latent_size, mode="area")
    masks = masks.view(batch, branches, 1, *latent_size) * valid[:, :, None, None, None]
    # where every valid branch is masked (cloud everywhere), fall back to equal weights
    nothing_clear = masks.sum(1, keepdim=True) <= 0
    return torch.where(nothing_clear, valid[:, :, None, None, None].expand_as(masks), masks)


def mean_consensus(x0: torch.Tensor, context: FusionContext) -> torch.Tensor:
    return weighted_mean(x0, context.valid.float())


def time_weighted_consensus(x0: torch.Tensor, context: FusionContext) -> torch.Tensor:
    return weighted_mean(x0, time_weights(context))


def mask_weighted_consensus(x0: torch.Tensor, context: FusionContext) -> torch.Tensor:
    return weighted_mean(x0, mask_weights(context, tuple(x0.shape[-2:])))


def optimized_objective(x: torch.Tensor, x0: torch.Tensor, context: FusionContext,
                        weights: torch.Tensor) -> torch.Tensor:
    """Per-scene Σ_i w_i‖x − x0_i‖² + λ Σ_j ‖m_j ⊙ (Down(D(x)) − LR_j)‖² (w normalised to sum 1).

    i runs over the branches, j over the observed LRs: the branches' own LRs, or `lr_valid`'s."""
    w = weights / weights.sum(1, keepdim=True).clamp_min(1e-12)
    prior = (w[:, :, None, None, None] * (x[:, None] - x0) ** 2).flatten(1).sum(1)
    if context.lr is None or context.dc_weight == 0:
        return prior
    image = context.decode(x) if context.decode is not None else x
    lr_size = tuple(context.lr.shape[-2:])
    down = F.interpolate(image, size=lr_size, mode="area")  # the sensor's box-filter footprint
    masks = context.lr_mask if context.lr_mask is not None else torch.ones_like(context.lr[:, :, 0])
    observed = context.valid if context.lr_valid is None else context.lr_valid
    masks = masks * observed[:, :, None, None].to(masks.dtype)
    residual = masks[:, :, None] * (down[:, None] - context.lr)
    return prior + context.dc_weight * (residual ** 2).flatten(1).sum(1)


def optimized_consensus(x0: torch.Tensor, context: FusionContext) -> torch.Tensor:
    """Weighted mean, then K gradient steps on `optimized_objective` (LR data consistency).

    The paper's "optimisation every 5 steps". Each scene keeps its best iterate, so the returned
    consensus never has a higher objective than the weighted mean it starts from.
    """
    weights = time_weights(context)
    start = weighted_mean(x0, weights).detach()
    x = start.clone().requires_grad_(True)
    optimizer = torch.optim.SGD([x], lr=context.optimize_lr)
    best, best_value = start.clone(), None
    with torch.enable_grad():
        for step in range(context.optimize_steps + 1):
            optimizer.zero_grad()
            value = optimized_objective(x, x0.detach(), context, weights)
            with torch.no_grad():
                if best_value is None:
                    best_value = value.detach().clone()
                improved = value.detach() < best_value
                best[improved] = x.detach()[improved]
                best_value = torch.minimum(best_value, value.detach())
            if step == context.optimize_steps:  # last iterate evaluated, no further step
                break
            value.sum().backward()  # scenes are independent: the sum gives each its own gradient
            optimizer.step()
    return best


CONSENSUS_RULES: dict[str, Callable[[torch.Tensor, FusionContext], torch.Tensor]] = {
    "mean": mean_consensus,
    "time_weighted": time_weighted_consensus,
    "mask_weighted": mask_weighted_consensus,
    "optimized": optimized_consensus,
}


def fuse_estimates(x0: torch.Tensor, rule: str, context: FusionContext) -> torch.Tensor:
    """B×N×C×h×w branch estimates -> B×C×h×w consensus under `rule` (`sampler.consensus`)."""
    if rule not in CONSENSUS_RULES:
        raise UserError(f"unknown consensus rule '{rule}'; choose one of {', '.join(CONSENSUS_RULES)}")
    return CONSENSUS_RULES[rule](x0, context)
