"""Paired differences: a table row against its reference row, scene for scene.

Two configurations evaluated on the same scenes differ by much less than their separate CIs suggest:
most of a scene's error is the scene's. The Δ column of the ablation and method tables is therefore

    Δ = mean over scenes s of d_s,   d_s = mean over seeds of (value(row; s, seed) − value(ref; s, seed))

over the (scene key, seed) pairs both evaluated (the per-scene rows of eval/<name>.jsonl, or a sweep
trial's `scenes` attribute), with a 95% CI from a paired bootstrap over scenes: `scipy.stats.bootstrap`
of the mean of d_s, percentile method, `RESAMPLES` resamples from a generator seeded with `SEED`, so a
report rebuilt from the same files prints the same interval. A CI that excludes 0 is a difference
the scenes support (`PairedDelta.significant`). A constant difference has a CI of zero width.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from .tables import Cell

RESAMPLES = 10_000
SEED = 0
Pairs = dict[tuple[str, int], float]  # (scene key, seed) -> value


@dataclass(frozen=True)
class PairedDelta:
    mean: float
    low: float
    high: float
    scenes: int  # scenes both evaluated (the bootstrap's sample size)
    seeds: int  # distinct seeds among the pairs

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0


def pairs_of(rows: Iterable[dict[str, Any]], metric: str) -> Pairs:
    """(key, seed) -> the metric's finite value; a pair seen in several rows (replicate trials) is averaged."""
    found: dict[tuple[str, int], list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            found.setdefault((str(row["key"]), int(row.get("seed", 0))), []).append(float(value))
    return {pair: float(np.mean(values)) for pair, values in found.items()}


def paired_delta(row: Pairs, reference: Pairs, resamples: int = RESAMPLES, seed: int = SEED) -> PairedDelta | None:
    """Δ (row − reference) over the pairs both have, with its paired bootstrap 95% CI; None: no pair in common."""
    common = sorted(set(row) & set(reference))
    if not common:
        return None
    by_scene: dict[str, list[float]] = {}
    for pair in common:
        by_scene.setdefault(pair[0], []).append(row[pair] - reference[pair])
    differences = np.asarray([np.mean(v) for v in by_scene.values()], dtype=np.float64)
    mean = float(differences.mean())
    low = high = mean
    if differences.size > 1 and np.ptp(differences) > 0:  # otherwise every resample has the same mean
        interval = stats.bootstrap((differences,), np.mean, n_resamples=resamples, confidence_level=0.95,
                                   method="percentile", random_state=np.random.default_rng(seed)).confidence_interval
        low, high = float(interval.low), float(interval.high)
    return PairedDelta(mean, low, high, scenes=len(by_scene), seeds=len({s for _, s in common}))


def basis_note(deltas: Sequence[PairedDelta]) -> str:
    """What the CIs of a table rest on: '16 scenes × 1 seed' (a range when rows differ)."""
    scenes = sorted({d.scenes for d in deltas})
    seeds = sorted({d.seeds for d in deltas})

    def span(values: list[int], unit: str) -> str:
        text = str(values[0]) if len(values) == 1 else f"{values[0]}–{values[-1]}"
        return f"{text} {unit}{'' if values == [1] else 's'}"

    return f"{span(scenes, 'scene')} × {span(seeds, 'seed')}"


# ------------------------------------------------------------------------------------- table cells
def delta_cell(delta: PairedDelta | None, why_missing: str) -> Cell:
    """Δ with its CI (marked when the CI excludes 0), or the reason there is none."""
    if delta is None:
        return Cell(unavailable=why_missing)
    return Cell(value=delta.mean, interval=(delta.low, delta.high), n=delta.scenes, marked=delta.significant)


def delta_notes(deltas: Sequence[PairedDelta], reference: str) -> list[str]:
    """The footnote of a table with Δ columns: definition, reference, marking and what the CIs rest on."""
    if not deltas:
        return []
    return [f"Δ = mean per-scene paired difference (row − reference) over the (scene, seed) pairs both "
            f"evaluated, [95% paired bootstrap CI over scenes, {RESAMPLES:,} resamples, seed {SEED}]; "
            f"* = the CI excludes 0; reference: {reference}; each CI rests on {basis_note(deltas)}"]
