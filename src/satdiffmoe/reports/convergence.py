"""Convergence: how many steps and how much wall-clock time each method needs to reach a quality level.

The paper claims SatDiffMoE converges 5–15× faster than ControlNet and DiffusionSat; these tables say
what *our* logs say. A run reaches a threshold at the first logged validation step whose value is at
least the threshold (at most, for lower-is-better metrics such as loss) — no interpolation, because
nothing is known between two validations. A method's crossing is the median over its runs that reach
the threshold; a threshold no run reaches is reported as "not reached", never extrapolated.

Default thresholds, per validation metric: 90% of the best final value among all runs (higher is
better), or the best final value / 0.9 (lower is better). `--thresholds val/psnr=20` replaces them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from . import figures
from .sources import TrainingRun, higher_is_better, method_name, metric_label, ordered_metrics
from .tables import Cell, Row, Table

PROPOSED = "satdiffmoe"
DEFAULT_FRACTION = 0.9
PAPER_CLAIM = "the paper reports 5–15× faster convergence than both baselines"


@dataclass
class Crossing:
    """Where one run first reaches a threshold (None = never) and how far it was logged."""

    step: float | None
    seconds: float | None
    last_step: float
    last_seconds: float | None
    final: float


def first_crossing(run: TrainingRun, metric: str, threshold: float) -> Crossing | None:
    """None when the run never logged the metric."""
    steps, seconds, values = run.series(metric)
    if not len(values):
        return None
    reached = values >= threshold if higher_is_better(metric) else values <= threshold
    hit = int(np.argmax(reached)) if reached.any() else None
    return Crossing(step=None if hit is None else float(steps[hit]),
                    seconds=None if hit is None or not math.isfinite(seconds[hit]) else float(seconds[hit]),
                    last_step=float(steps[-1]), last_seconds=float(seconds[-1]) if math.isfinite(seconds[-1]) else None,
                    final=float(values[-1]))


def validation_metrics(runs: Sequence[TrainingRun]) -> list[str]:
    names = {m for run in runs for m in run.metrics() if m.startswith("val/")}
    by_base = {m.split("/", 1)[1]: m for m in names}
    return [by_base[b] for b in ordered_metrics(by_base)]


def default_thresholds(runs: Sequence[TrainingRun], metrics: Sequence[str]) -> dict[str, float]:
    thresholds = {}
    for metric in metrics:
        finals = [run.series(metric)[2][-1] for run in runs if len(run.series(metric)[2])]
        if higher_is_better(metric):
            thresholds[metric] = DEFAULT_FRACTION * max(finals)
        else:
            thresholds[metric] = min(finals) / DEFAULT_FRACTION
    return thresholds


def parse_thresholds(items: Sequence[str], available: Sequence[str]) -> dict[str, float]:
    """`["val/psnr=20"]` -> {"val/psnr": 20.0}; unknown metrics and bad numbers are UserErrors."""
    parsed = {}
    for item in items:
        metric, sep, number = item.partition("=")
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not sep or not metric or not math.isfinite(value):
            raise UserError(f"bad threshold '{item}'; write metric=value, e.g. val/psnr=20")
        if metric not in available:
            raise UserError(f"unknown metric '{metric}' in --thresholds; the runs log: {', '.join(available) or 'no val/ metrics'}")
        parsed[metric] = value
    return parsed


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


@dataclass
class MethodCrossing:
    step: float | None
    seconds: float | None
    reached: int
    runs: int
    last_step: float
    last_seconds: float | None


def method_crossing(crossings: Sequence[Crossing]) -> MethodCrossing:
    hits = [c for c in crossings if c.step is not None]
    times = [c.seconds for c in hits if c.seconds is not None]
    return MethodCrossing(step=_median([c.step for c in hits]), seconds=_median(times) if len(times) == len(hits) else None,
                          reached=len(hits), runs=len(crossings), last_step=max(c.last_step for c in crossings),
                          last_seconds=max((c.last_seconds for c in crossings if c.last_seconds is not None), default=None))


def speedup_cell(proposed: float | None, baseline: float | None, baseline_limit: float | None) -> Cell:
    """baseline / proposed; a lower bound "> x" when only the baseline never got there."""
    if proposed is None:
        return Cell(text="not reached")
    if baseline is None:
        if baseline_limit is None or proposed <= 0:
            return Cell(text="not reached by baseline")
        return Cell(text=f"> {baseline_limit / proposed:.1f}")
    return Cell(text="∞") if proposed <= 0 else Cell(value=baseline / proposed, decimals=2)


def _time_speedup(ours: MethodCrossing, theirs: MethodCrossing) -> Cell:
    if ours.step is not None and ours.seconds is None or theirs.step is not None and theirs.seconds is None:
        return Cell(unavailable="no wall_time logged")
    return speedup_cell(ours.seconds, theirs.seconds, theirs.last_seconds)


def _step_cell(value: float | None) -> Cell:
    return Cell(text="not reached") if value is None else Cell(value=int(value))


def _time_cell(value: float | None, step: float | None) -> Cell:
    if step is None:
        return Cell(text="not reached")
    return Cell(value=value) if value is not None else Cell(unavailable="no wall_time logged")


def _describe(metric: str, threshold: float, derived: bool) -> str:
    direction = "≥" if higher_is_better(metric) else "≤"
    how = ("derived: 90% of the best final value" if higher_is_better(metric) else
           "derived: best final value / 0.9") if derived else "given"
    return f"{metric} {direction} {threshold:.4g} ({how})"


def convergence_tables(runs: Sequence[TrainingRun], thresholds: dict[str, float],
                       derived: bool) -> list[tuple[str, Table]]:
    """Per metric: each run's steps/time to the threshold; then SatDiffMoE's speed-up over each baseline."""
    tables = []
    speedups = Table(title="Convergence speed-up of SatDiffMoE (baseline steps / SatDiffMoE steps)",
                     row_header="threshold vs baseline",
                     columns=["SatDiffMoE step", "baseline step", "speed-up (steps, ×)",
                              "SatDiffMoE time (s)", "baseline time (s)", "speed-up (time, ×)"],
                     notes=[PAPER_CLAIM, "a method's step/time is the median over its runs that reach the threshold",
                            "> x: the baseline never reached it within its logged steps (lower bound)"])
    for metric, threshold in thresholds.items():
        description = _describe(metric, threshold, derived)
        table = Table(title=f"Steps and time to reach {description}", row_header="run",
                      columns=["method", "step", "time (s)", f"final {metric_label(metric)}", "last step"])
        per_method: dict[str, list[Crossing]] = {}
        for run in runs:
            crossing = first_crossing(run, metric, threshold)
            if crossing is None:
                continue
            per_method.setdefault(run.method, []).append(crossing)
            table.rows.append(Row(run.label, [method_name(run.method), _step_cell(crossing.step),
                                              _time_cell(crossing.seconds, crossing.step), Cell(value=crossing.final),
                                              Cell(value=int(crossing.last_step))]))
        tables.append((f"convergence_{metric.replace('/', '_')}", table))
        if PROPOSED not in per_method:
            continue
        ours = method_crossing(per_method[PROPOSED])
        for baseline in (m for m in per_method if m != PROPOSED):
            theirs = method_crossing(per_method[baseline])
            speedups.rows.append(Row(f"{description.split(' (')[0]} vs {method_name(baseline)}", [
                _step_cell(ours.step), _step_cell(theirs.step),
                speedup_cell(ours.step, theirs.step, theirs.last_step),
                _time_cell(ours.seconds, ours.step), _time_cell(theirs.seconds, theirs.step),
                _time_speedup(ours, theirs),
            ]))
            for name, crossing in ((PROPOSED, ours), (baseline, theirs)):
                note = f"{description.split(' (')[0]}: {crossing.reached} of {crossing.runs} {method_name(name)} runs reach it"
                if crossing.runs > 1 and note not in speedups.notes:
                    speedups.notes.append(note)
    if speedups.rows:
        tables.append(("convergence_speedup", speedups))
    return tables


def convergence_figures(runs: Sequence[TrainingRun], thresholds: dict[str, float],
                        out_dir: Path) -> list[tuple[str, Path]]:
    made = []
    for metric in validation_metrics(runs):
        curves = []
        for run in runs:
            steps, seconds, values = run.series(metric)
            if len(values):
                curves.append(figures.Curve(f"{method_name(run.method)}: {run.label}", run.method,
                                            steps.tolist(), seconds.tolist(), values.tolist()))
        path = out_dir / f"convergence_{metric.replace('/', '_')}.png"
        figures.plot_convergence(curves, metric_label(metric), thresholds.get(metric),
                                 f"{metric_label(metric)} during training", path)
        made.append((f"{metric} vs training step and wall-clock time", path))
    return made
