"""`DiffusionSatPipeline`: the DiffusionSat baseline at sampling time.

A scene is ONE branch whose condition holds the whole stack: T frames (the denoiser's
`num_frames`; the T nearest in time when a scene has more, padded with `valid = False` when it has
fewer), each with its per-frame metadata. Data consistency compares the branch with all T frames;
its Δt is the nearest frame's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..data.lr_stack import nearest_in_time, time_order
from ..models.metadata_embedding import frame_metadata
from ..sampling.config import SamplerConfig
from ..sampling.fused_sampler import BranchInputs
from .base import LatentSRPipeline
from .inputs import SRInputs


def pad_frames(values: torch.Tensor, frames: int, fill: float | bool = 0) -> torch.Tensor:
    """Pad dim 1 (the LR axis) of a B×N×... tensor to `frames` entries."""
    missing = frames - values.shape[1]
    if missing <= 0:
        return values
    padding = values.new_full((values.shape[0], missing, *values.shape[2:]), fill)
    return torch.cat([values, padding], dim=1)


class DiffusionSatPipeline(LatentSRPipeline):
    stage = "diffusionsat"

    def frames(self, batch: dict[str, torch.Tensor]) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
        """(take, valid): `take` maps a B×N×... tensor to its T frames, the T nearest in time (padded
        when a scene has fewer); valid is B×T."""
        frames = self.denoiser.frames
        valid = pad_frames(batch["lr_valid"].bool(), frames, False)
        order = time_order(pad_frames(batch["dt"], frames), valid)[:, :frames]

        def take(values: torch.Tensor) -> torch.Tensor:
            values = pad_frames(values, frames)
            index = order.view(*order.shape, *([1] * (values.ndim - 2))).expand(-1, -1, *values.shape[2:])
            return values.gather(1, index)

        return take, valid.gather(1, order)

    def stack(self, inputs: SRInputs | dict[str, Any]) -> dict[str, torch.Tensor]:
        """The T-frame condition: image B×T×C×h×w, valid B×T, one B×T tensor per metadata field (and the
        prior's GSD when it embeds one). Training builds its condition with this same function."""
        batch = inputs.as_dict() if isinstance(inputs, SRInputs) else inputs
        take, valid = self.frames(batch)
        lr = take(batch["lr"])
        images = self.condition_image(lr.flatten(0, 1)).unflatten(0, lr.shape[:2])
        cond = {"image": images, "valid": valid}
        metadata = frame_metadata(batch, self.denoiser.metadata.fields)
        cond.update({f"meta_{name}": take(value) for name, value in metadata.items()})
        if self.denoiser.prior.scalars:
            cond["gsd"] = batch["gsd"]
        return cond

    def branches(self, inputs: SRInputs, sampler: SamplerConfig) -> BranchInputs:
        """One branch per scene; data consistency compares it with every frame it is conditioned on,
        as SatDiffMoE's consensus does with its N LRs (the same observations for both methods)."""
        cond = {key: value[:, None] for key, value in self.stack(inputs).items()}
        take, valid = self.frames(inputs.as_dict())
        nearest = inputs.select(nearest_in_time(inputs.dt, inputs.lr_valid)[:, None])
        return BranchInputs(cond=cond, dt=nearest.dt,
                            valid=torch.ones(inputs.num_scenes, 1, dtype=torch.bool, device=inputs.lr.device),
                            lr=self.consistency_lr(take(inputs.lr)), lr_mask=take(inputs.lr_mask), lr_valid=valid)
