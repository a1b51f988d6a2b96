"""Source values -> record integers, with an account of what the conversion lost.

A record stores integers and `value_max` (the integer that means 1.0). Every converter turns its
source values (float reflectance, 12-bit DN, 8-bit JPEG, ...) into those integers through `quantise`,
which refuses, with a `UserError` that `--skip-bad` counts by its category, a raster that

* is empty: no finite value, or 0 everywhere (a fill-only file);
* lost more than `max_clipped` of its values to clipping into [0, value_max];
* was zeroed: more than `max_clipped` of its nonzero values became 0 (float reflectance 0..1 read as
  if it were DN is the classic case: every pixel rounds to 0 and the scene would be written black);
* became constant although the source spans more than one record step.

The account (`stats`) keeps per-band source ranges, NaN counts and the clipped / zeroed fractions; the
converters put it into each record's `meta["radiometry"]` and the shard writer sums it up in the
manifest, so a silent loss shows up as a number instead of a black image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from satdiffmoe.errors import UserError

DEFAULT_MAX_CLIPPED = 0.02  # the --max-clipped default: at most 2 % of a raster's values may clip


def finite_pixels(values: np.ndarray) -> np.ndarray:
    """H×W bool from C×H×W: True where every band is finite (integers are always finite)."""
    if not np.issubdtype(values.dtype, np.floating):
        return np.ones(values.shape[-2:], dtype=bool)
    return np.isfinite(values).all(axis=0)


def quantise(values: np.ndarray, scale: float | list[float], value_max: int, dtype: type, what: str,
             max_clipped: float = DEFAULT_MAX_CLIPPED,
             offset: float | list[float] = 0.0) -> tuple[np.ndarray, dict[str, Any]]:
    """C×H×W source values -> round((values − offset) · scale) clipped to [0, value_max], as `dtype`.

    `scale` and `offset` are one number or one per band (a per-band stretch). Non-finite values become
    0 (callers mask them with `finite_pixels`) and are counted, never clipped. Returns (record, stats).
    """
    source = values.astype(np.float64)
    band_scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1, 1)
    band_offset = np.asarray(offset, dtype=np.float64).reshape(-1, 1, 1)
    finite = np.isfinite(source)
    n_finite = int(finite.sum())
    nan_count = int(source.size - n_finite)
    if n_finite == 0:
        raise UserError(f"empty: {what} has no finite value ({nan_count} NaN/inf)")
    scaled = np.where(finite, (source - band_offset) * band_scale, 0.0)
    rounded = np.round(scaled)
    below, above = int((finite & (rounded < 0)).sum()), int((finite & (rounded > value_max)).sum())
    record = np.clip(rounded, 0, value_max).astype(dtype)
    nonzero_source = finite & (source != 0)
    zeroed = int((nonzero_source & (record == 0)).sum()) - below  # negatives clipped to 0 are counted as clipped
    band_min = [float(np.min(b[f])) if f.any() else None for b, f in zip(source, finite)]
    band_max = [float(np.max(b[f])) if f.any() else None for b, f in zip(source, finite)]
    stats = {
        "values": n_finite, "nan": nan_count,
        "clipped": round((below + above) / n_finite, 6), "clipped_low": below, "clipped_high": above,
        "zeroed": round(max(zeroed, 0) / n_finite, 6),
        "zero_fraction": round(float((record == 0).mean()), 6),
        "source_min": band_min, "source_max": band_max,
    }
    if not nonzero_source.any():
        raise UserError(f"empty: {what} is 0 everywhere (a fill-only raster)")
    if stats["clipped"] > max_clipped:
        low, high = _source_range(value_max, band_scale, band_offset)
        raise UserError(f"over-clipped: {what} has {stats['clipped']:.1%} of its values outside [{low}, {high}] "
                        f"(source range {min(v for v in band_min if v is not None):g}.."
                        f"{max(v for v in band_max if v is not None):g}; limit --max-clipped {max_clipped})")
    if stats["zeroed"] > max_clipped:
        raise UserError(f"zeroed: {what}: {stats['zeroed']:.1%} of its nonzero values became 0 at scale {_fmt(band_scale)} "
                        f"(source range {min(v for v in band_min if v is not None):g}.."
                        f"{max(v for v in band_max if v is not None):g}); is it float reflectance read as DN?")
    kept = record[:, finite.all(axis=0)] if record.ndim == 3 else record[finite]
    source_kept = source[:, finite.all(axis=0)] if source.ndim == 3 else source[finite]
    # "not constant" = spanning at least one record step (float resampling jitters a constant image)
    if kept.size and kept.min() == kept.max() and (source_kept.max() - source_kept.min()) * band_scale.min() >= 1:
        raise UserError(f"constant: {what} became the constant {int(kept.min())} in the record although the "
                        f"source ranges {source_kept.min():g}..{source_kept.max():g} (scale {_fmt(band_scale)})")
    return record, stats


def _fmt(values: np.ndarray) -> str:
    flat = sorted({float(f"{v:.6g}") for v in values.ravel()})
    return f"{flat[0]:g}" if len(flat) == 1 else "/".join(f"{v:g}" for v in flat)


def _source_range(value_max: int, scale: np.ndarray, offset: np.ndarray) -> tuple[str, str]:
    """The source interval that maps onto [0, value_max] (per band when the stretch is per band)."""
    low, high = offset.ravel() + 0 * scale.ravel(), offset.ravel() + value_max / scale.ravel()
    return _fmt(low), _fmt(high)


def summarise(stats: list[dict[str, Any]]) -> dict[str, Any]:
    """Several rasters' stats (e.g. the LR revisits of one scene) -> one compact per-record entry."""
    return {
        "nan": sum(s["nan"] for s in stats),
        "clipped": max(s["clipped"] for s in stats),
        "zeroed": max(s["zeroed"] for s in stats),
        "source_min": [_pick(min, v) for v in zip(*[s["source_min"] for s in stats])],
        "source_max": [_pick(max, v) for v in zip(*[s["source_max"] for s in stats])],
    }


def _pick(reduce, values) -> float | None:
    known = [v for v in values if v is not None]
    return reduce(known) if known else None
