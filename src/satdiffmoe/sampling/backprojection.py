"""Pixel-space iterative back-projection of the LR error (Irani & Peleg 1991), after decoding.

`sampler.backprojection: K` (0 = off) applies, to the decoded output x, K times

    x ← x + up( Σ_j m_j ⊙ (LR_j − down(x)) / Σ_j m_j )

with `down` the sensor's box filter (area resize, as in the `optimized` consensus), `up` bicubic, and
m_j the clear-pixel mask of each observed LR. It pulls the output's low frequencies onto what the LRs
say at the cost of K resizes, instead of the `optimized` consensus' decoder gradients at every fusion
step (ESA's LDSR-S2 post-processes the same way). Where no LR is clear the output is left as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def back_project(image: torch.Tensor, lr: torch.Tensor, observed: torch.Tensor, lr_mask: torch.Tensor | None,
                 steps: int) -> torch.Tensor:
    """image B×C×H×W and lr B×M×C×h×w in [-1, 1]; observed B×M bool; lr_mask B×M×h×w (1 = clear)."""
    if steps <= 0:
        return image
    masks = torch.ones_like(lr[:, :, :1]) if lr_mask is None else lr_mask[:, :, None].to(lr.dtype)
    masks = masks * observed[:, :, None, None, None].to(lr.dtype)
    coverage = masks.sum(1)
    lr_size, hr_size = tuple(lr.shape[-2:]), tuple(image.shape[-2:])
    out = image.float()
    for _ in range(steps):
        residual = (masks * (lr - F.interpolate(out, size=lr_size, mode="area")[:, None])).sum(1)
        residual = torch.where(coverage > 0, residual / coverage.clamp_min(1e-12), torch.zeros_like(residual))
        out = out + F.interpolate(residual, size=hr_size, mode="bicubic", align_corners=False)  # unclamped
    return out.clamp(-1, 1).to(image.dtype)
