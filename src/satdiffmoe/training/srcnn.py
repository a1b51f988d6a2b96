"""`stage: srcnn` — the single-image baseline (models/srcnn.py): one LR in, one HR out.

It trains on one LR per scene (`data.train_lr_policy=pair`, the default) and runs on the LR nearest
in time at test, as the ControlNet baseline does without late fusion.
"""

from __future__ import annotations

from typing import Any

import torch

from ..data.lr_stack import nearest_in_time
from ..models.srcnn import SRCNN
from .regression import RegressionTask


class SRCNNTask(RegressionTask):
    stage = "srcnn"
    uses_lr_stack = False

    def configure_network(self, config: dict | None) -> SRCNN:
        if config is None:
            config = {"in_channels": self.cfg.data.channels, "features": self.cfg.model.regression.features,
                      "scale": self.cfg.data.scale}
        return SRCNN(**config)

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        index = nearest_in_time(batch["dt"], batch["lr_valid"])
        rows = torch.arange(index.shape[0], device=index.device)
        return self.network(batch["lr"][rows, index])
