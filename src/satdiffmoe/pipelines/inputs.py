"""`SRInputs`: what a user gives a super-resolution pipeline, checked and batched.

Pipelines take user-level inputs, never a training batch: LR images (a B×N×C×h×w tensor, one scene's
N×C×h×w stack, or a list of C×h×w tensors / arrays), one Δt per LR in days (NaN = unknown), and
optionally per-LR clear-pixel masks, the HR's ground sampling distance and per-LR metadata. Missing
pieces get the values the training data uses for "unknown" (NaN) or "all clear" (ones).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


def _tensor(value: Any, dtype=torch.float32) -> torch.Tensor:
    if torch.is_tensor(value):
        return value.to(dtype)
    if isinstance(value, (list, tuple)) and value and (torch.is_tensor(value[0]) or isinstance(value[0], np.ndarray)):
        return torch.stack([_tensor(v, dtype) for v in value])
    return torch.as_tensor(np.asarray(value), dtype=dtype)


@dataclass
class SRInputs:
    lr: torch.Tensor  # B×N×C×h×w in [-1, 1]
    dt: torch.Tensor  # B×N days (t_LR - t_HR), NaN = unknown
    lr_valid: torch.Tensor  # B×N bool, False = padding slot
    lr_mask: torch.Tensor  # B×N×h×w, 1 = clear pixel
    gsd: torch.Tensor  # B metres, NaN = unknown
    lr_doy: torch.Tensor  # B×N day of year, NaN = unknown
    lr_cloud: torch.Tensor  # B×N fraction of masked pixels

    @classmethod
    def build(cls, lr: Any, dt: Any = None, lr_mask: Any = None, lr_valid: Any = None, gsd: Any = None,
              lr_doy: Any = None, lr_cloud: Any = None, device: torch.device | str | None = None) -> SRInputs:
        """Batch user inputs; a single scene (N×C×h×w or a list of C×h×w) becomes B = 1."""
        lr = _tensor(lr)
        single = lr.dim() == 4
        if single:
            lr = lr[None]
        if lr.dim() != 5:
            raise ValueError(f"lr must be B×N×C×h×w, N×C×h×w or a list of C×h×w images, got shape {tuple(lr.shape)}")

        def per_lr(value: Any, fill: float) -> torch.Tensor:
            if value is None:
                return torch.full(lr.shape[:2], fill)
            value = _tensor(value)
            value = value[None] if single and value.dim() == 1 else value
            if tuple(value.shape) != tuple(lr.shape[:2]):
                raise ValueError(f"expected one value per LR image ({lr.shape[1]} per scene), got shape "
                                 f"{tuple(value.shape)}")
            return value

        dt = per_lr(dt, float("nan"))
        valid = torch.ones(lr.shape[:2], dtype=torch.bool) if lr_valid is None else per_lr(lr_valid, 1).bool()
        if lr_mask is None:
            mask = torch.ones(*lr.shape[:2], *lr.shape[-2:])
        else:
            mask = _tensor(lr_mask)
            mask = mask[None] if single and mask.dim() == 3 else mask
            if tuple(mask.shape) != (*lr.shape[:2], *lr.shape[-2:]):
                raise ValueError(f"lr_mask must be one h×w mask per LR image, got shape {tuple(mask.shape)}")
        cloud = per_lr(lr_cloud, 0.0) if lr_cloud is not None else 1 - mask.mean((-2, -1))
        gsd = torch.full((lr.shape[0],), float("nan")) if gsd is None else _tensor(gsd).reshape(-1)
        if gsd.numel() == 1 and lr.shape[0] > 1:
            gsd = gsd.expand(lr.shape[0])
        inputs = cls(lr=lr, dt=dt, lr_valid=valid, lr_mask=mask, gsd=gsd, lr_doy=per_lr(lr_doy, float("nan")),
                     lr_cloud=cloud)
        if not inputs.lr_valid.any(1).all():
            raise ValueError("every scene needs at least one valid LR image")
        return inputs.to(device) if device is not None else inputs

    @classmethod
    def from_batch(cls, batch: Mapping[str, Any]) -> SRInputs:
        """The LR side of a `SatDataModule` batch (docs/ARCHITECTURE.md, "Data record and batches")."""
        return cls(lr=batch["lr"], dt=batch["dt"], lr_valid=batch["lr_valid"].bool(), lr_mask=batch["lr_mask"],
                   gsd=batch["gsd"], lr_doy=batch["lr_doy"], lr_cloud=batch["lr_cloud"])

    def to(self, device: torch.device | str) -> SRInputs:
        return SRInputs(**{name: value.to(device) for name, value in self.as_dict().items()})

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Batch-keyed view (the keys `SatDataModule` batches use), e.g. for per-frame metadata."""
        return {"lr": self.lr, "dt": self.dt, "lr_valid": self.lr_valid, "lr_mask": self.lr_mask, "gsd": self.gsd,
                "lr_doy": self.lr_doy, "lr_cloud": self.lr_cloud}

    def select(self, index: torch.Tensor) -> SRInputs:
        """The LRs at `index` (B×K indices into each scene's N), keeping per-scene values."""
        def take(values: torch.Tensor) -> torch.Tensor:
            idx = index.view(*index.shape, *([1] * (values.dim() - 2))).expand(-1, -1, *values.shape[2:])
            return values.gather(1, idx)

        return SRInputs(lr=take(self.lr), dt=take(self.dt), lr_valid=take(self.lr_valid), lr_mask=take(self.lr_mask),
                        gsd=self.gsd, lr_doy=take(self.lr_doy), lr_cloud=take(self.lr_cloud))

    @property
    def num_scenes(self) -> int:
        return int(self.lr.shape[0])


def pad_lrs(inputs: SRInputs, count: int) -> SRInputs:
    """Pad every scene to `count` LR slots (invalid, zero image and mask, unknown metadata)."""
    missing = count - inputs.lr.shape[1]
    if missing <= 0:
        return inputs

    def pad(values: torch.Tensor, fill: float | bool) -> torch.Tensor:
        padding = values.new_full((values.shape[0], missing, *values.shape[2:]), fill)
        return torch.cat([values, padding], dim=1)

    return SRInputs(lr=pad(inputs.lr, 0), dt=pad(inputs.dt, 0), lr_valid=pad(inputs.lr_valid, False),
                    lr_mask=pad(inputs.lr_mask, 0), gsd=inputs.gsd, lr_doy=pad(inputs.lr_doy, 0),
                    lr_cloud=pad(inputs.lr_cloud, 0))

