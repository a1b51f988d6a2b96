"""Matplotlib figures for reports: convergence curves, metric-vs-factor bars, quality-vs-time Pareto fronts.

Headless (Agg backend) and offline: only the DejaVu fonts bundled with matplotlib are used, so nothing
is fetched or looked up on the system. Each function takes plain numbers and writes one PNG.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt

STYLE = {"font.family": "DejaVu Sans", "font.size": 9, "axes.grid": True, "grid.alpha": 0.3, "figure.dpi": 120}
# One colour per method, stable across every figure of a report.
METHOD_COLOURS = {"satdiffmoe": "tab:red", "controlnet": "tab:blue", "diffusionsat": "tab:green",
                  "highresnet": "tab:purple", "rams": "tab:brown", "srcnn": "tab:olive"}


@dataclass
class Curve:
    label: str
    method: str
    steps: Sequence[float]
    seconds: Sequence[float]
    values: Sequence[float]


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def time_axis(max_seconds: float) -> tuple[float, str]:
    """Divisor and label so wall-clock axes read in s, min or h."""
    if max_seconds >= 3 * 3600:
        return 3600.0, "wall-clock time (h)"
    if max_seconds >= 600:
        return 60.0, "wall-clock time (min)"
    return 1.0, "wall-clock time (s)"


def plot_convergence(curves: Sequence[Curve], metric: str, threshold: float | None, title: str, path: Path) -> Path:
    """Metric vs training step (left) and vs wall-clock time (right), one line per run."""
    with plt.rc_context(STYLE):
        fig, (by_step, by_time) = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
        seconds = [s for c in curves for s in c.seconds if math.isfinite(s)]
        divisor, time_label = time_axis(max(seconds, default=0.0))
        others = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][3:])
        colours = {m: METHOD_COLOURS.get(m) or next(others, "tab:gray") for m in dict.fromkeys(c.method for c in curves)}
        for curve in curves:
            style = {"color": colours[curve.method], "marker": ".", "markersize": 4, "linewidth": 1.2,
                     "label": curve.label}
            by_step.plot(curve.steps, curve.values, **style)
            by_time.plot([s / divisor for s in curve.seconds], curve.values, **style)
        for axis, xlabel in ((by_step, "training step"), (by_time, time_label)):
            if threshold is not None:
                axis.axhline(threshold, color="black", linestyle="--", linewidth=0.8, label=f"threshold {threshold:g}")
            axis.set_xlabel(xlabel)
        by_step.set_ylabel(metric)
        by_time.legend(loc="best", fontsize=7)
        fig.suptitle(title)
        return _save(fig, path)


def plot_factor(levels: Sequence[str], panels: dict[str, tuple[list[float], list[float]]], factor: str,
                title: str, path: Path) -> Path:
    """One panel per metric: mean with 95% CI error bars at each level of the factor (categorical x)."""
    with plt.rc_context(STYLE):
        n = len(panels)
        cols = min(3, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.0 * rows), squeeze=False)
        positions = list(range(len(levels)))
        for axis, (metric, (means, cis)) in zip(axes.flat, panels.items()):
            axis.errorbar(positions, means, yerr=cis, marker="o", capsize=3, linewidth=1.2)
            axis.set_xticks(positions, [str(v) for v in levels])
            axis.set_xlabel(factor)
            axis.set_ylabel(metric)
            axis.set_title(metric)
        for axis in list(axes.flat)[n:]:
            axis.set_visible(False)
        fig.suptitle(title)
        fig.tight_layout()
        return _save(fig, path)


def plot_pareto(points, front: Sequence[int], metric: str, title: str, path: Path) -> Path:
    """Every configuration as a point (time, quality); the Pareto-optimal ones joined and labelled."""
    with plt.rc_context(STYLE):
        fig, axis = plt.subplots(figsize=(6, 4))
        axis.errorbar([p.seconds_per_image for p in points], [p.quality for p in points],
                      yerr=[p.ci95 or 0.0 for p in points], fmt="o", color="tab:gray", alpha=0.6,
                      capsize=2, label="configuration")
        best = [points[i] for i in front]
        axis.plot([p.seconds_per_image for p in best], [p.quality for p in best], "o-", color="tab:red",
                  label="Pareto front")
        for p in best:
            axis.annotate(p.label, (p.seconds_per_image, p.quality), fontsize=6, xytext=(4, 4),
                          textcoords="offset points")
        axis.set_xlabel("sampling time (s / image)")
        axis.set_ylabel(metric)
        axis.legend(loc="best", fontsize=7)
        axis.set_title(title)
        return _save(fig, path)


def plot_sparsification(curves: dict[str, tuple], path: Path | str, title: str = "Sparsification") -> Path:
    """One solid line per method (its mean sparsification curve) and its oracle dashed, same colour.

    `curves[name] = (fractions, mean curve, mean oracle)`, sequences or tensors of equal length.
    """
    def floats(values) -> list[float]:
        return [float(v) for v in (values.tolist() if hasattr(values, "tolist") else values)]

    with plt.rc_context(STYLE):
        fig, axis = plt.subplots(figsize=(5, 3.8))
        others = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"][3:])
        for name, (fractions, curve, oracle) in curves.items():
            colour = METHOD_COLOURS.get(name) or next(others, "tab:gray")
            axis.plot(floats(fractions), floats(curve), color=colour, linewidth=1.4, label=name)
            axis.plot(floats(fractions), floats(oracle), color=colour, linewidth=1.0, linestyle="--",
                      label=f"{name} oracle")
        axis.set_xlabel("fraction of pixels removed (most uncertain first)")
        axis.set_ylabel("mean error of the rest (relative)")
        axis.legend(loc="best", fontsize=7)
        axis.set_title(title)
        return _save(fig, Path(path))
