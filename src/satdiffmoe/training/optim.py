"""AdamW + warm-up/cosine schedule for every stage (diffusers' schedule helpers, stepped per optimizer step)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from diffusers.optimization import get_scheduler
from omegaconf import DictConfig

from ..errors import UserError

SCHEDULES = {"constant": "constant_with_warmup", "cosine": "cosine"}


def configure_adamw(params: Iterable[torch.nn.Parameter], train: DictConfig) -> dict:
    """The `configure_optimizers` return value; the scheduler is named so LearningRateMonitor logs `train/lr`."""
    if train.lr_schedule not in SCHEDULES:
        raise UserError(f"train.lr_schedule={train.lr_schedule!r} is not one of {', '.join(SCHEDULES)}")
    optimizer = torch.optim.AdamW(list(params), lr=train.lr, weight_decay=train.weight_decay,
                                  fused=True if train.fused_adamw else None)
    schedule = get_scheduler(SCHEDULES[train.lr_schedule], optimizer,
                             num_warmup_steps=train.warmup_steps, num_training_steps=train.max_steps)
    return {"optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "interval": "step", "frequency": 1, "name": "train/lr"}}
