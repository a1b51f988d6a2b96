"""The shard record: one WebDataset sample = one scene (docs/ARCHITECTURE.md, "Data record and batches").

Keys of a sample in a `.tar` shard (all written by `encode_scene`, read back by `decode_scene`):

    __key__        scene id (unique within the dataset)
    hr.npy         HR image, C×H×W, uint8 or uint16
    lr.npy         N LR images, N×C_lr×h×w, same dtype as HR, H = scale·h; C_lr = C unless the LR is
                   multispectral (meta.lr_bands names its bands; data.lr_rgb maps them onto the HR's)
    lr_mask.npy    N×h×w uint8, 1 = clear/valid pixel (cloud/quality mask), 0 = masked
    hr_mask.npy    optional H×W uint8 validity mask of the HR (PROBA-V status map)
    json           metadata, see `Scene.meta`

`meta` always has: source, scale, bands (the HR's), value_max (the value that maps to 1.0: 255 for uint8,
4095 for 12-bit, ...), lr_dt (days, signed, t_LR − t_HR; null = unknown), and may have lr_bands (the
LR's band names; required when the LR has other bands than the HR), hr_time,
lr_times (ISO dates), gsd (m/px of the HR), lr_gsd, cloud_cover (per LR, 0..1), lon, lat, crs,
transform (HR affine as 6 numbers), split.

Everything downstream works on `SceneTensors` (float32 in [-1, 1], Δt with NaN for unknown).
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

RECORD_VERSION = 1
ALLOWED_DTYPES = (np.uint8, np.uint16)


class RecordError(ValueError):
    """A record that cannot be used (wrong shapes, dtype, non-finite values, missing fields)."""


@dataclass
class Scene:
    key: str
    hr: np.ndarray
    lr: np.ndarray
    lr_mask: np.ndarray
    meta: dict[str, Any]
    hr_mask: np.ndarray | None = None

    @property
    def num_lr(self) -> int:
        return int(self.lr.shape[0])

    @property
    def lr_dt(self) -> list[float | None]:
        return list(self.meta.get("lr_dt", [None] * self.num_lr))


@dataclass
class SceneTensors:
    """A decoded, normalised scene: what the datamodule hands to collate."""

    key: str
    hr: torch.Tensor  # C×H×W in [-1, 1]
    lr: torch.Tensor  # N×C_lr×h×w in [-1, 1]
    lr_mask: torch.Tensor  # N×h×w float {0, 1}
    dt: torch.Tensor  # N float32 days, NaN = unknown
    meta: dict[str, Any] = field(default_factory=dict)
    hr_mask: torch.Tensor | None = None  # H×W float {0, 1}


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _npy_load(data: bytes, name: str) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:
        raise RecordError(f"{name} is not a readable .npy array ({exc.__class__.__name__})") from None


def validate_scene(scene: Scene, expect_scale: int | None = None, expect_channels: int | None = None,
                   expect_lr_channels: int | None = None) -> None:
    """Raise `RecordError` naming the first inconsistency of `scene`.

    The LR may have other bands than the HR (multispectral LR, RGB HR); `expect_lr_channels` is the
    config's LR band count (data.lr_channels, or data.channels when that is null).
    """
    hr, lr, mask = scene.hr, scene.lr, scene.lr_mask
    if hr.dtype not in ALLOWED_DTYPES or lr.dtype not in ALLOWED_DTYPES:
        raise RecordError(f"dtype must be uint8 or uint16, got hr {hr.dtype} / lr {lr.dtype}")
    if hr.ndim != 3:
        raise RecordError(f"hr must be C×H×W, got shape {tuple(hr.shape)}")
    if lr.ndim != 4 or lr.shape[0] < 1:
        raise RecordError(f"lr must be N×C×h×w with N >= 1, got shape {tuple(lr.shape)}")
    if expect_channels is not None and hr.shape[0] != expect_channels:
        raise RecordError(f"record has {hr.shape[0]} bands, config expects data.channels={expect_channels}")
    if expect_lr_channels is not None and lr.shape[1] != expect_lr_channels:
        raise RecordError(f"record's LR has {lr.shape[1]} bands but the config expects {expect_lr_channels}; "
                          f"set data.lr_channels={lr.shape[1]} (and data.lr_rgb) to match the shards")
    lr_bands = scene.meta.get("lr_bands")
    if lr_bands is None and lr.shape[1] != hr.shape[0]:  # an accident unless the record says otherwise
        raise RecordError(f"lr has {lr.shape[1]} bands but hr has {hr.shape[0]}; a multispectral LR names its "
                          "bands in meta.lr_bands")
    if lr_bands is not None and len(lr_bands) != lr.shape[1]:
        raise RecordError(f"meta.lr_bands names {len(lr_bands)} bands but lr has {lr.shape[1]}")
    scale = int(scene.meta.get("scale", 0))
    if scale < 1 or hr.shape[1] != lr.shape[2] * scale or hr.shape[2] != lr.shape[3] * scale:
        raise RecordError(f"hr {tuple(hr.shape[1:])} is not scale={scale} × lr {tuple(lr.shape[2:])}")
    if expect_scale is not None and scale != expect_scale:
        raise RecordError(f"record scale {scale} differs from data.scale={expect_scale}")
    if mask.shape != (lr.shape[0],) + tuple(lr.shape[2:]):
        raise RecordError(f"lr_mask shape {tuple(mask.shape)} does not match lr {tuple(lr.shape)}")
    if scene.hr_mask is not None and scene.hr_mask.shape != tuple(hr.shape[1:]):
        raise RecordError(f"hr_mask shape {tuple(scene.hr_mask.shape)} does not match hr {tuple(hr.shape)}")
    dts = scene.meta.get("lr_dt")
    if dts is None or len(dts) != lr.shape[0]:
        raise RecordError(f"meta.lr_dt must list one Δt per LR ({lr.shape[0]}), got {dts!r}")
    for dt in dts:
        if dt is not None and not math.isfinite(float(dt)):
            raise RecordError(f"meta.lr_dt has a non-finite value {dt!r} (use null for unknown)")
    value_max = scene.meta.get("value_max")
    if not value_max or value_max <= 0:
        raise RecordError("meta.value_max must be a positive number (255 for uint8 data)")


def encode_scene(scene: Scene) -> dict[str, Any]:
    """Scene -> WebDataset sample dict (validates first, so bad scenes never reach a shard)."""
    validate_scene(scene)
    meta = dict(scene.meta, record_version=RECORD_VERSION)
    sample = {
        "__key__": scene.key,
        "hr.npy": _npy_bytes(scene.hr),
        "lr.npy": _npy_bytes(scene.lr),
        "lr_mask.npy": _npy_bytes(scene.lr_mask.astype(np.uint8)),
        "json": json.dumps(meta).encode(),
    }
    if scene.hr_mask is not None:
        sample["hr_mask.npy"] = _npy_bytes(scene.hr_mask.astype(np.uint8))
    return sample


def decode_scene(sample: dict[str, Any], expect_scale: int | None = None,
                 expect_channels: int | None = None, expect_lr_channels: int | None = None) -> Scene:
    """Raw WebDataset sample (bytes values) -> validated Scene; raises `RecordError`."""
    missing = [k for k in ("hr.npy", "lr.npy", "lr_mask.npy", "json") if k not in sample]
    if missing:
        raise RecordError(f"record is missing {', '.join(missing)}")
    try:
        meta = json.loads(sample["json"])
    except Exception:
        raise RecordError("record json is not valid JSON") from None
    scene = Scene(
        key=str(sample.get("__key__", "?")),
        hr=_npy_load(sample["hr.npy"], "hr.npy"),
        lr=_npy_load(sample["lr.npy"], "lr.npy"),
        lr_mask=_npy_load(sample["lr_mask.npy"], "lr_mask.npy"),
        meta=meta,
        hr_mask=_npy_load(sample["hr_mask.npy"], "hr_mask.npy") if "hr_mask.npy" in sample else None,
    )
    validate_scene(scene, expect_scale, expect_channels, expect_lr_channels)
    return scene


def to_tensors(scene: Scene) -> SceneTensors:
    """Normalise to float32 in [-1, 1]; Δt None -> NaN. Raises `RecordError` on non-finite output."""
    value_max = float(scene.meta["value_max"])
    hr = torch.from_numpy(scene.hr.astype(np.float32)) / value_max * 2 - 1
    lr = torch.from_numpy(scene.lr.astype(np.float32)) / value_max * 2 - 1
    if not (torch.isfinite(hr).all() and torch.isfinite(lr).all()):
        raise RecordError("non-finite pixel values")
    dt = torch.tensor([float("nan") if d is None else float(d) for d in scene.lr_dt], dtype=torch.float32)
    return SceneTensors(
        key=scene.key, hr=hr.clamp(-1, 1), lr=lr.clamp(-1, 1),
        lr_mask=torch.from_numpy(scene.lr_mask.astype(np.float32)), dt=dt, meta=scene.meta,
        hr_mask=None if scene.hr_mask is None else torch.from_numpy(scene.hr_mask.astype(np.float32)),
    )


def from_unit(image: torch.Tensor, value_max: float = 255.0, dtype=np.uint8) -> np.ndarray:
    """[-1, 1] tensor -> integer array in the record's radiometry (inverse of `to_tensors`)."""
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) / 2 * value_max).round().numpy()
    return array.astype(dtype)
