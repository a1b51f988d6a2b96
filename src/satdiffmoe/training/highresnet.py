"""`stage: highresnet` — HighRes-net (models/highresnet.py) on every valid LR of a scene.

Frames are ordered nearest in time first (unknown Δt after known), so the recursive fusion pairs
frames in the same order at training and at test; any number of LRs, padding masked out.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.lr_stack import time_order
from ..models.highresnet import HighResNet
from .regression import RegressionTask


def by_time(values: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    index = order.view(*order.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:])
    return values.gather(1, index)


class HighResNetTask(RegressionTask):
    stage = "highresnet"

    def configure_network(self, config: dict | None) -> HighResNet:
        if config is None:
            r = self.cfg.model.regression
            config = {"in_channels": self.cfg.data.channels, "features": r.features, "blocks": r.blocks,
                      "scale": self.cfg.data.scale}
        return HighResNet(**config)

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        order = time_order(batch["dt"], batch["lr_valid"])
        return self.network(by_time(batch["lr"], order), batch["lr_valid"].gather(1, order))
