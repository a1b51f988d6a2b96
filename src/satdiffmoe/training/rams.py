"""`stage: rams` — RAMS (models/rams.py) on a fixed stack of T = `model.regression.frames` LRs.

The T valid LRs nearest in time; a scene with fewer repeats its valid LRs in that order until T
(RAMS has no mask input, and a zero frame would read as a mid-grey image), so padding slots of a
batch never reach the network.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.lr_stack import time_order
from ..models.rams import RAMS
from .highresnet import by_time
from .regression import RegressionTask


def fixed_stack(lr: torch.Tensor, dt: torch.Tensor, valid: torch.Tensor, frames: int) -> torch.Tensor:
    """B×T×C×h×w: the valid LRs by |Δt|, cycled to fill T slots when a scene has fewer."""
    order = time_order(dt, valid)
    count = valid.sum(1, keepdim=True).clamp_min(1)
    slot = torch.arange(frames, device=lr.device).expand(lr.shape[0], -1) % count
    return by_time(lr, order.gather(1, slot))


class RAMSTask(RegressionTask):
    stage = "rams"

    def configure_network(self, config: dict | None) -> RAMS:
        if config is None:
            r = self.cfg.model.regression
            config = {"in_channels": self.cfg.data.channels, "features": r.features, "blocks": r.blocks,
                      "frames": r.frames, "scale": self.cfg.data.scale, "reduction": r.attention_reduction}
        return RAMS(**config)

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.network(fixed_stack(batch["lr"], batch["dt"], batch["lr_valid"], self.network.frames))
