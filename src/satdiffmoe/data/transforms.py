"""Per-scene transforms: centre crop, LR selection policies and dihedral augmentation.

They work on the reader's scene samples (dicts of tensors, see `reader.scene_sample`): spatial keys
hold HR-resolution (`hr`, `hr_mask`) or LR-resolution (`lr`, `lr_mask`) images, per-LR keys hold
one entry per LR acquisition along their first dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .lr_stack import time_order
from .record import RecordError, Scene

PER_LR_KEYS = ("lr", "lr_mask", "dt", "lr_cloud", "lr_doy")
SPATIAL_KEYS = ("hr", "hr_mask", "lr", "lr_mask")
Sample = dict[str, Any]


def centre_crop(scene: Scene, hr_size: int) -> Scene:
    """Crop HR to hr_size² and every LR to the matching (hr_size / scale)² window."""
    height, width = scene.hr.shape[1:]
    if (height, width) == (hr_size, hr_size):
        return scene
    scale = int(scene.meta["scale"])
    if height < hr_size or width < hr_size or hr_size % scale:
        raise RecordError(
            f"hr {height}×{width} cannot be centre-cropped to data.hr_size={hr_size} at scale {scale}"
        )
    low = hr_size // scale
    top, left = (
        (scene.lr.shape[2] - low) // 2,
        (scene.lr.shape[3] - low) // 2,
    )  # whole LR pixels keep alignment
    hr_window = (slice(top * scale, top * scale + hr_size), slice(left * scale, left * scale + hr_size))
    lr_window = (slice(top, top + low), slice(left, left + low))
    return Scene(
        key=scene.key,
        hr=scene.hr[(slice(None),) + hr_window],
        lr=scene.lr[(slice(None), slice(None)) + lr_window],
        lr_mask=scene.lr_mask[(slice(None),) + lr_window],
        meta=scene.meta,
        hr_mask=None if scene.hr_mask is None else scene.hr_mask[hr_window],
    )


def select_indices(dt: torch.Tensor, policy: str, k: int, rng: np.random.Generator) -> np.ndarray:
    """Which LRs of a scene to use. k = -1 or k >= N means all of them (except for `pair`)."""
    count = int(dt.shape[0])
    take = count if k < 0 else min(k, count)
    if policy == "pair":  # the paper's training setting: one random (LR, Δt) per example
        return np.array([rng.integers(count)])
    if policy == "all" or (take == count and policy != "nearest_k"):
        return np.arange(count)
    if policy == "first_k":
        return np.arange(take)
    if policy == "random_k":
        return np.sort(rng.choice(count, size=take, replace=False))
    if policy == "nearest_k":  # smallest |Δt| first, unknown Δt last, ties in acquisition order
        return time_order(dt[None])[0, :take].numpy()
    raise ValueError(f"unknown LR policy {policy!r}")


def select_lrs(sample: Sample, policy: str, k: int, rng: np.random.Generator) -> Sample:
    index = torch.from_numpy(select_indices(sample["dt"], policy, k, rng))
    return dict(sample, **{key: sample[key][index] for key in PER_LR_KEYS})


def dihedral(sample: Sample, flip: bool, quarter_turns: int) -> Sample:
    """Apply the same flip and rotation to HR, HR mask and every LR and LR mask."""
    out = dict(sample)
    for key in SPATIAL_KEYS:
        image = sample[key]
        if flip:
            image = image.flip(-1)
        out[key] = torch.rot90(image, quarter_turns, dims=(-2, -1))
    return out


def random_dihedral(sample: Sample, rng: np.random.Generator) -> Sample:
    """One of the 8 flips/rotations, uniformly (satellite images have no preferred orientation)."""
    return dihedral(sample, bool(rng.integers(2)), int(rng.integers(4)))
