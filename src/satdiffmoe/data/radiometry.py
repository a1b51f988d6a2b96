"""Radiometry: how record pixels relate to a dataset's physical units, and keeping an output in the LR's.

**Normalisation.** A record stores integers 0..value_max and the network sees them as [-1, 1]
(`record.to_tensors`). `Normalisation` says which source values those are, per band, as the interval
[low, high] that maps linearly onto [-1, 1]:

* ``scale``: one factor for every band, low = 0. WorldStrat: reflectance 0..1 (SPOT DN / 10000 and
  Sentinel-2 L2A reflectance); PROBA-V: 14-bit DN 0..16383; SynthSat and stacks: value / value_max.
* ``stretch``: per band [mean − kσ, mean + kσ]. fMoW-Sentinel DN, as DiffusionSat's and SatMAE's
  `SentinelNormalize` does (diffusionsat/data_util.py ~561): the mean and σ are fixed per-band
  statistics of the fMoW-Sentinel *training set* (the same 13 numbers in both repositories), so the
  stretch is per dataset, not per image, and a given DN means the same in every record.

Converters write one for the HR and one for the LR into manifest.json (`normalisation.record`),
`forward` maps source values to [-1, 1] (unclipped, unrounded) and `inverse` maps model outputs back.
`satdiffmoe sample` uses both (`manifest_normalisation`): the LR's `forward` on the input file's raw
values, the HR's `inverse` on the output, written by `to_units` as integers when the HR's interval is
one of integers (8-bit JPEG 0..255, 14-bit DN 0..16383) and as float32 otherwise (reflectance 0..1).

**Output matching** (`satdiffmoe sample --match-lr`). `match_mean_std` and `match_histogram` map each
band of an output onto the distribution of the LR stack's clear pixels, so a model trained on another
palette still returns the scene's colours. Both are exact: mean-std gives the reference's per-band mean
and (population) std; histogram matching gives, for as many output as reference pixels, the
reference's sorted values.

**Far from training.** `far_from_training` compares an input stack with the training manifest's
per-record LR statistics (`stats.lr_scenes`, written by the shard writer from the train split).
The rule, per band, in the [0, 1] units the network sees (value / value_max):

    |mean of the input's clear pixels − M| > 3 · max(S, 0.01)

where M and S are the mean and standard deviation, over training records, of each record's LR mean.
A Gaussian spread of scene means puts 0.3 % of the training scenes themselves outside 3 S; the
0.01 floor (1 % of full scale, 2.5 steps of 8-bit data) keeps a training set of near-identical
scenes from flagging every input. Only the mean is tested: a whole input scene is larger than a
training chip, so its contrast (std) is legitimately larger, while its mean is, if anything, closer
to M than a chip's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UserError

KINDS = ("scale", "stretch")
MATCH_METHODS = ("mean-std", "histogram", "none")
FAR_SIGMAS = 3.0  # input mean beyond M ± 3 S of the training records' means -> warning
MIN_SPREAD = 0.01  # floor on S, in [0, 1] units


@dataclass(frozen=True)
class Normalisation:
    """Source values in [low, high] (per band; one entry = every band) <-> pixels in [-1, 1]."""

    kind: str
    value_max: float  # the record integer that stands for `high` (pixel +1)
    low: tuple[float, ...]
    high: tuple[float, ...]
    units: str = "value / value_max"  # what forward() takes and inverse() returns
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. the stretch's mean, std and k

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"normalisation kind must be one of {KINDS}, got {self.kind!r}")
        if len(self.low) != len(self.high) or not self.low:
            raise ValueError(f"low and high need one value per band (or one for all): {self.low}, {self.high}")
        if any(h <= lo for lo, h in zip(self.low, self.high)):
            raise ValueError(f"every band needs high > low: {self.low}, {self.high}")

    @classmethod
    def scale(cls, value_max: float, high: float | None = None, units: str = "value / value_max",
              description: str = "") -> Normalisation:
        """Source 0..high (default value_max: the record itself) -> [-1, 1], every band alike."""
        return cls("scale", float(value_max), (0.0,), (float(value_max if high is None else high),), units, description)

    @classmethod
    def stretch(cls, mean: Sequence[float], std: Sequence[float], k: float, value_max: float, units: str,
                description: str = "") -> Normalisation:
        """Per band [mean − kσ, mean + kσ] -> [-1, 1] (DiffusionSat's SentinelNormalize with k = 2)."""
        low = tuple(float(m - k * s) for m, s in zip(mean, std))
        high = tuple(float(m + k * s) for m, s in zip(mean, std))
        extra = {"mean": [float(m) for m in mean], "std": [float(s) for s in std], "k": float(k)}
        return cls("stretch", float(value_max), low, high, units, description, extra)

    def _bounds(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low, high = (np.asarray(v, dtype=np.float64).reshape(-1, 1, 1) for v in (self.low, self.high))
        bands = values.shape[-3] if values.ndim >= 3 else 1
        if low.shape[0] not in (1, bands):
            raise ValueError(f"{low.shape[0]}-band normalisation for {bands}-band values")
        return low, high

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Source values (…×C×H×W) -> pixels, [-1, 1] on [low, high]; neither clipped nor rounded."""
        values = np.asarray(values, dtype=np.float64)
        low, high = self._bounds(values)
        return (values - low) / (high - low) * 2.0 - 1.0

    def inverse(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels (…×C×H×W) -> source values: low + (pixels + 1) / 2 · (high − low)."""
        pixels = np.asarray(pixels, dtype=np.float64)
        low, high = self._bounds(pixels)
        return low + (pixels + 1.0) / 2.0 * (high - low)

    def summary(self) -> str:
        """One phrase: `reflectance 0..1` or `Sentinel-2 DN per band [-794..3067, ...] (mean ± 2σ)`."""
        ranges = ", ".join(f"{lo:g}..{h:g}" for lo, h in zip(self.low, self.high))
        text = f"{self.units} {ranges}" if len(self.low) == 1 else f"{self.units} per band [{ranges}]"
        if self.kind == "stretch" and "k" in self.extra:
            text += f" (mean ± {self.extra['k']:g}σ)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value_max": self.value_max, "low": list(self.low), "high": list(self.high),
                "units": self.units, "description": self.description, **({"extra": self.extra} if self.extra else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Normalisation:
        return cls(str(data["kind"]), float(data["value_max"]), tuple(float(v) for v in data["low"]),
                   tuple(float(v) for v in data["high"]), str(data.get("units", "value / value_max")),
                   str(data.get("description", "")), dict(data.get("extra") or {}))


def record_normalisation(hr: Normalisation, lr: Normalisation | None = None) -> dict[str, Any]:
    """The manifest entry `normalisation.record`: {"hr": ..., "lr": ...} (the LR defaults to the HR's)."""
    return {"hr": hr.to_dict(), "lr": (lr or hr).to_dict()}


def manifest_normalisation(manifest: dict[str, Any] | None) -> tuple[Normalisation, Normalisation] | None:
    """(LR, HR) Normalisation of a manifest's `normalisation.record`; None when it records none (or only one)."""
    record = ((manifest or {}).get("normalisation") or {}).get("record") or {}
    if "lr" not in record or "hr" not in record:
        return None
    return Normalisation.from_dict(record["lr"]), Normalisation.from_dict(record["hr"])


def integer_dtype(normalisation: Normalisation) -> np.dtype | None:
    """uint8 / uint16 when every band's [low, high] is whole numbers in that type's range and above 1
    (8-bit JPEG 0..255, 14-bit DN 0..16383, value_max 4095); None (float32) otherwise: reflectance
    0..1, a stretch over mean ± kσ, negative bounds."""
    bounds = np.asarray(normalisation.low + normalisation.high, dtype=np.float64)
    if (bounds != np.round(bounds)).any() or bounds.min() < 0 or max(normalisation.high) <= 1:
        return None
    for dtype in (np.uint8, np.uint16):
        if bounds.max() <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return None


def to_units(pixels: np.ndarray, normalisation: Normalisation) -> tuple[np.ndarray, int]:
    """[-1, 1] model outputs (C×H×W) -> (values in the normalisation's units, number of values clipped).

    Values outside [-1, 1] (matching can push tails there) are clipped to it, i.e. to [low, high],
    the interval the training records held; then `inverse`, rounded into `integer_dtype` when there
    is one, else float32.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    clipped = int(np.count_nonzero((pixels < -1) | (pixels > 1)))
    values = normalisation.inverse(np.clip(pixels, -1, 1))
    dtype = integer_dtype(normalisation)
    if dtype is None:
        return values.astype(np.float32), clipped
    return np.round(values).astype(dtype), clipped


# ---------------------------------------------------------------- output matching

def _reference_bands(reference: np.ndarray, mask: np.ndarray | None, bands: int) -> list[np.ndarray]:
    """Per band, the 1-D clear pixels of a (N×)C×h×w reference under a (N×)h×w mask (nonzero = clear)."""
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[None] if ref.ndim == 3 else ref
    if ref.shape[1] != bands:
        raise ValueError(f"the reference has {ref.shape[1]} bands, the output {bands}")
    keep = np.ones((ref.shape[0],) + ref.shape[2:], dtype=bool) if mask is None else np.asarray(mask) > 0
    keep = keep[None] if keep.ndim == 2 else keep
    if not keep.any():
        raise UserError("every LR pixel is masked, so there is nothing to match the output to; pass --match-lr none")
    return [ref[:, b][keep] for b in range(bands)]


def _float_like(output: np.ndarray) -> tuple[np.ndarray, np.dtype]:
    output = np.asarray(output)
    dtype = output.dtype if np.issubdtype(output.dtype, np.floating) else np.float64
    return output.astype(np.float64), dtype


def match_mean_std(output: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """C×H×W output -> per band (x − mean) · std_ref / std + mean_ref: the reference's mean and std.

    A linear gain and offset per band: the output's detail and ordering are kept. A constant band
    becomes the reference mean.
    """
    values, dtype = _float_like(output)
    for band, ref in enumerate(_reference_bands(reference, mask, values.shape[0])):
        x = values[band]
        spread = x.std()
        values[band] = (x - x.mean()) * (ref.std() / spread) + ref.mean() if spread > 0 else ref.mean()
    return values.astype(dtype)


def match_histogram(output: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """C×H×W output -> per band, each pixel replaced by the reference quantile of its rank.

    Ranks are spread over the sorted reference (linear interpolation between its values), so n output
    pixels of distinct values and n reference pixels give exactly the reference's sorted values; tied
    output pixels share one value (their mean rank), so a flat area stays flat.
    """
    values, dtype = _float_like(output)
    for band, ref in enumerate(_reference_bands(reference, mask, values.shape[0])):
        x = values[band]
        unique, inverse, counts = np.unique(x.ravel(), return_inverse=True, return_counts=True)
        n, m = x.size, ref.size
        center = np.cumsum(counts) - counts + (counts - 1) / 2.0  # mean 0-based rank of each value
        position = center * ((m - 1) / (n - 1)) if n > 1 else np.full(unique.shape, (m - 1) / 2.0)
        values[band] = np.interp(position, np.arange(m), np.sort(ref))[inverse].reshape(x.shape)
    return values.astype(dtype)


def match_output(output: np.ndarray, reference: np.ndarray, mask: np.ndarray | None, method: str) -> np.ndarray:
    """`--match-lr` dispatch: "mean-std", "histogram" or "none"."""
    if method == "none":
        return output
    if method == "mean-std":
        return match_mean_std(output, reference, mask)
    if method == "histogram":
        return match_histogram(output, reference, mask)
    raise ValueError(f"--match-lr must be one of {MATCH_METHODS}, got {method!r}")


# ---------------------------------------------------------------- input vs training data

def band_statistics(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """Per-band mean and std over the clear pixels of an (N×)C×h×w stack (mask (N×)h×w, nonzero = clear)."""
    bands = _reference_bands(values, mask, np.asarray(values).shape[-3])
    return [float(b.mean()) for b in bands], [float(b.std()) for b in bands]


def summarise_scenes(means: Sequence[Sequence[float]]) -> dict[str, Any]:
    """Per-record per-band LR means -> the manifest's `stats.lr_scenes`: M and S per band."""
    array = np.asarray(means, dtype=np.float64)
    return {"count": int(array.shape[0]), "mean_of_means": array.mean(0).round(6).tolist(),
            "std_of_means": array.std(0).round(6).tolist(),
            "space": "[0,1] after division by value_max; one LR mean per record (clear pixels of all its LRs)"}


def manifest_id(raw: bytes) -> str:
    """The id evaluate records for a dataset (evaluation/dataset.py): the manifest's SHA-1, 12 digits."""
    return hashlib.sha1(raw).hexdigest()[:12]


def read_manifest(root: str | Path) -> tuple[dict[str, Any] | None, str | None]:
    """(manifest, id) of the shard folder `root`; (None, None) when it has no readable manifest.json."""
    path = Path(str(root)).expanduser() / "manifest.json"
    try:
        raw = path.read_bytes()
        return json.loads(raw), manifest_id(raw)
    except (OSError, ValueError):
        return None, None


def describe_training(root: str | Path, manifest: dict[str, Any] | None, identity: str | None) -> str:
    """One line: which data the model was trained on and how its pixels were normalised."""
    if manifest is None:
        return (f"trained on: data.root={root} (no readable manifest.json there, so its normalisation and "
                "statistics are unknown)")
    record = (manifest.get("normalisation") or {}).get("record") or {}
    parts = [f"{role.upper()} {Normalisation.from_dict(record[role]).summary()} -> [-1, 1]"
             for role in ("lr", "hr") if role in record]
    if not parts and manifest.get("value_max"):
        parts = [f"value / {manifest['value_max']} -> [-1, 1]"]
    counts = manifest.get("counts") or {}
    return (f"trained on: {manifest.get('source', 'unknown source')} (manifest {identity}, {root}, "
            f"{counts.get('train', '?')} train records): {'; '.join(parts) or 'normalisation not recorded'}")


def far_from_training(values01: np.ndarray, mask: np.ndarray | None, manifest: dict[str, Any] | None,
                      band_names: Sequence[str] | None = None) -> str | None:
    """A warning line when a band's input mean lies beyond M ± 3·max(S, 0.01) (module docstring), else None.

    `values01` is the LR stack in the network's [0, 1] units (N×C×h×w); `manifest` the training one.
    """
    scenes = ((manifest or {}).get("stats") or {}).get("lr_scenes")
    if not scenes:
        return None
    means, _ = band_statistics(values01, mask)
    if len(scenes["mean_of_means"]) != len(means):
        return None
    names = list(band_names or (manifest or {}).get("bands") or [])
    far = []
    for band, (value, center, spread) in enumerate(zip(means, scenes["mean_of_means"], scenes["std_of_means"])):
        sigmas = abs(value - center) / max(spread, MIN_SPREAD)
        if sigmas > FAR_SIGMAS:
            name = names[band] if band < len(names) else f"band {band + 1}"
            far.append(f"{name} mean {value:.3f} vs {center:.3f} ± {spread:.3f} ({sigmas:.0f}σ)")
    if not far:
        return None
    return (f"warning: the input is far from the training data ({'; '.join(far)}, in value / value_max of "
            f"{scenes['count']} training records; rule: beyond {FAR_SIGMAS:g}σ of their means). Check "
            "--value-max and the bands; expect the output to be out of domain")


def training_report(root: str | Path, values01: np.ndarray, mask: np.ndarray | None) -> list[str]:
    """`sample`'s stderr lines: what the model was trained on, then a warning if the input is far from it."""
    manifest, identity = read_manifest(root)
    lines = [describe_training(root, manifest, identity)]
    warning = far_from_training(values01, mask, manifest)
    if warning:
        lines.append(warning)
    elif manifest is not None and not (manifest.get("stats") or {}).get("lr_scenes"):
        lines.append("note: the training manifest has no LR statistics (stats.lr_scenes; written before they "
                     "were recorded), so the input cannot be compared with the training data")
    return lines
