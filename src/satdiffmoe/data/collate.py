"""Batching scenes with different numbers of LR images: zero padding plus a validity mask.

Produces exactly the batch of docs/ARCHITECTURE.md: hr, lr, lr_mask, lr_valid, dt, lr_cloud, lr_doy,
gsd, hr_mask, key. Padding slots have lr_valid False and zeros everywhere else.
"""

from __future__ import annotations

from typing import Any

import torch

from .lr_stack import lr_band_count

BATCH_KEYS = ("hr", "lr", "lr_mask", "lr_valid", "dt", "lr_cloud", "lr_doy", "gsd", "hr_mask", "key")


def collate_scenes(samples: list[dict[str, Any]], pad_to: int | None = None) -> dict[str, Any]:
    """Stack scene samples; the LR axis is padded to max(pad_to, the batch's largest N)."""
    if not samples:
        raise ValueError("cannot collate an empty list of scenes")
    slots = max([int(s["lr"].shape[0]) for s in samples] + [pad_to or 0])
    batch_size = len(samples)
    lr_shape = tuple(samples[0]["lr"].shape[1:])
    batch = {
        "hr": torch.stack([s["hr"] for s in samples]),
        "lr": torch.zeros((batch_size, slots) + lr_shape),
        "lr_mask": torch.zeros((batch_size, slots) + lr_shape[1:]),
        "lr_valid": torch.zeros(batch_size, slots, dtype=torch.bool),
        "dt": torch.zeros(batch_size, slots),
        "lr_cloud": torch.zeros(batch_size, slots),
        "lr_doy": torch.zeros(batch_size, slots),
        "gsd": torch.tensor([float(s["gsd"]) for s in samples]),
        "hr_mask": torch.stack([s["hr_mask"] for s in samples]),
        "key": [s["key"] for s in samples],
    }
    for row, sample in enumerate(samples):
        count = int(sample["lr"].shape[0])
        batch["lr_valid"][row, :count] = True
        for key in ("lr", "lr_mask", "dt", "lr_cloud", "lr_doy"):
            batch[key][row, :count] = sample[key]
    return batch


def random_batch(cfg, scenes: int, branches: int, device: str | torch.device = "cpu", seed: int = 0) -> dict[str, Any]:
    """A batch shaped exactly like `SatDataModule`'s (all `BATCH_KEYS`), with random pixels and
    Δt spread over ±60 days: for benchmarks and tests that need inputs but not data."""
    g = torch.Generator().manual_seed(seed)
    channels, size = cfg.data.channels, cfg.data.hr_size
    lr_channels = lr_band_count(cfg.data)
    small = size // cfg.data.scale
    batch = {"hr": torch.rand(scenes, channels, size, size, generator=g) * 2 - 1,
             "lr": torch.rand(scenes, branches, lr_channels, small, small, generator=g) * 2 - 1,
             "lr_mask": torch.ones(scenes, branches, small, small),
             "lr_valid": torch.ones(scenes, branches, dtype=torch.bool),
             "dt": torch.linspace(-60.0, 60.0, branches).repeat(scenes, 1),
             "lr_cloud": torch.zeros(scenes, branches), "lr_doy": torch.full((scenes, branches), 100.0),
             "gsd": torch.ones(scenes), "hr_mask": torch.ones(scenes, size, size)}
    batch = {key: value.to(device) for key, value in batch.items()}
    batch["key"] = [f"scene{i}" for i in range(scenes)]
    return batch


# A rough factor, not a measurement: the loader holds the scenes it collects, the collated batch and the
# batch it prefetches at once, before the model adds any activations.
LOADER_COPIES = 3


def batch_bytes(data, batch_size: int, slots: int) -> int:
    """Bytes of one collated batch's float32 tensors (`collate_scenes`): HR, its mask, and `slots` LRs
    with their masks and per-LR numbers."""
    hr, lr = data.hr_size, data.hr_size // data.scale
    per_scene = (data.channels + 1) * hr * hr + slots * ((lr_band_count(data) + 1) * lr * lr + 4) + 1
    return 4 * per_scene * batch_size


def check_batch_memory(data, batch_size: int, slots: int, key: str) -> None:
    """Refuse a batch that cannot fit in this machine's available memory, before the first step:
    `data.batch_size=100000000` sat at step 0 for minutes while the loader collected scenes."""
    try:
        import psutil
    except ImportError:  # not installed: nothing to compare with
        return
    from ..errors import UserError

    available = psutil.virtual_memory().available
    need = LOADER_COPIES * batch_bytes(data, batch_size, slots)
    if need > available:
        fits = max(1, batch_size * available // need)
        keep = ", and raise train.accumulate to keep the effective batch" if key == "data.batch_size" else ""
        raise UserError(f"{key}={batch_size} needs about {need / 2 ** 30:.3g} GiB for one batch's HR+LR float32 "
                        f"tensors (x{LOADER_COPIES} for the loader's copies, before any activations), more than this "
                        f"machine's {available / 2 ** 30:.3g} GiB of available memory; lower {key} "
                        f"(at most about {fits} fit){keep}")
