"""Ablation tables from a sweep: each metric against each swept key (fusion frequency, NFE, number of LRs...).

A *factor* is any swept dotted key that takes more than one value (seed keys index repetitions, not
factors). Tables vary one factor, or two in a grid, with every other factor held at its *default*: the
base config value (the schema default, e.g. `sampler.nfe=50`) when the study evaluated it, otherwise
the factor's most common value. A configuration evaluated with several seeds shows mean ± 95% CI over
those seeds (Student t); a single evaluation shows the CI its eval summary reports over scenes.

Every table also has Δ columns (reports/paired.py): each row's mean per-scene paired difference from
the *reference* row, with a paired bootstrap 95% CI. The reference is the paper's setting
(`PAPER_SETTING`: fusion every 5, NFE 50, N = 8) unless the report is given another
(`satdiffmoe report --ablation-reference key=value`); a reference level the study did not evaluate
falls back to the nearest numeric level (else the factor's default), and the table says so.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from ..config.schema import ExperimentConfig
from ..evaluation.catalog import HEADLINE_METRICS, METRICS
from . import figures
from .paired import delta_cell, delta_notes, paired_delta, pairs_of
from .sources import (
    REPLICATE_KEYS,
    AblationSource,
    Observation,
    higher_is_better,
    metric_label,
    normalize_value,
    ordered_metrics,
)
from .tables import Cell, Row, Table, as_cell, mark_best

FACTOR_LABELS = {"sampler.fusion_every": "fusion every (steps)", "sampler.nfe": "NFE", "data.num_lr": "LR inputs N"}
FACTOR_ORDER = ("sampler.fusion_every", "sampler.nfe", "data.num_lr")
NOT_EVALUATED = "—"
# the paper's sampler setting (arXiv 2406.10225): the default reference row of the Δ columns
PAPER_SETTING = {"sampler.fusion_every": 5, "sampler.nfe": 50, "data.num_lr": 8}


def factor_label(key: str) -> str:
    return FACTOR_LABELS.get(key, key)


def _same(a: Any, b: Any) -> bool:
    return a == b or str(a) == str(b)


def _level_sort_key(value: Any) -> tuple[int, float, str]:
    # Numbers ascending, then text; "off" (never fuse) reads as the largest fusion interval.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, math.inf, str(value))


def levels(observations: Sequence[Observation], key: str) -> list[Any]:
    distinct: list[Any] = []
    for obs in observations:
        value = obs.params.get(key)
        if not any(_same(value, d) for d in distinct):
            distinct.append(value)
    return sorted(distinct, key=_level_sort_key)


def find_factors(observations: Sequence[Observation]) -> list[str]:
    keys = {k for obs in observations for k in obs.params if k not in REPLICATE_KEYS}
    swept = [k for k in keys if len(levels(observations, k)) > 1]
    return [k for k in FACTOR_ORDER if k in swept] + sorted(set(swept) - set(FACTOR_ORDER))


def default_levels(observations: Sequence[Observation], factors: Sequence[str]) -> dict[str, Any]:
    base = OmegaConf.structured(ExperimentConfig)
    defaults = {}
    for key in factors:
        observed = [obs.params.get(key) for obs in observations]
        schema_value = normalize_value(key, OmegaConf.select(base, key, default=None, throw_on_missing=False))
        if schema_value is not None and any(_same(schema_value, v) for v in observed):
            defaults[key] = next(v for v in observed if _same(schema_value, v))
        else:
            counts = Counter(str(v) for v in observed)
            top = max(counts.values())
            defaults[key] = min((v for v in observed if counts[str(v)] == top), key=_level_sort_key)
    return defaults


def metrics_of(observations: Sequence[Observation]) -> list[str]:
    """The headline metrics the observations have (all of them if none is a headline one), then time.
    Every metric stays in the trials' eval JSONs; ablation tables and figures show the headline."""
    names = {m for obs in observations for m in obs.metrics}
    names = (names & set(HEADLINE_METRICS)) or names
    if any(obs.seconds_per_image is not None for obs in observations):
        names.add("seconds_per_image")
    return ordered_metrics(names)


def _metric_entry(obs: Observation, metric: str) -> dict[str, Any]:
    if metric == "seconds_per_image":
        return {"mean": obs.seconds_per_image} if obs.seconds_per_image is not None else {"unavailable": "no timing"}
    return obs.metrics.get(metric) or {"unavailable": "not computed in this evaluation"}


def cell_stats(observations: Sequence[Observation], metric: str) -> Cell:
    """Mean ± 95% CI of `metric` over the observations (seeds) of one configuration."""
    if not observations:
        return Cell(text=NOT_EVALUATED)
    entries = [_metric_entry(obs, metric) for obs in observations]
    means = [float(e["mean"]) for e in entries if isinstance(e.get("mean"), (int, float))]
    if not means:
        reason = next((str(e["unavailable"]) for e in entries if "unavailable" in e), "no value recorded")
        return Cell(unavailable=reason)
    if len(means) == 1:
        entry = next(e for e in entries if isinstance(e.get("mean"), (int, float)))
        return Cell(value=means[0], ci95=entry.get("ci95"), n=1)
    n = len(means)
    half_width = stats.t.ppf(0.975, n - 1) * float(np.std(means, ddof=1)) / math.sqrt(n)
    return Cell(value=float(np.mean(means)), ci95=float(half_width), n=n)


def select(observations: Sequence[Observation], fixed: dict[str, Any]) -> list[Observation]:
    return [obs for obs in observations if all(_same(obs.params.get(k), v) for k, v in fixed.items())]


def _defaults_text(defaults: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{factor_label(k)} = {defaults[k]}" for k in keys)


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def reference_levels(observations: Sequence[Observation], factors: Sequence[str], defaults: dict[str, Any],
                     chosen: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """(factor -> reference level, factor -> how it was chosen) for the Δ columns: `chosen` (the report's
    --ablation-reference), else `PAPER_SETTING`, else the factor's default level. A wanted level the study
    lacks falls back to the nearest numeric level (ties: the smaller), else the default."""
    chosen = chosen or {}
    reference, how = {}, {}
    for key in factors:
        present = levels(observations, key)
        origin = "the report's" if key in chosen else "the paper's" if key in PAPER_SETTING else None
        if origin is None:
            reference[key], how[key] = defaults[key], "the factor's default level"
            continue
        wanted = normalize_value(key, chosen[key] if key in chosen else PAPER_SETTING[key])
        match = next((v for v in present if _same(v, wanted)), None)
        if match is not None:
            reference[key], how[key] = match, f"{origin} setting"
            continue
        numeric = [v for v in present if _numeric(v) is not None]
        if _numeric(wanted) is not None and numeric:
            reference[key] = min(numeric, key=lambda v: (abs(_numeric(v) - _numeric(wanted)), _numeric(v)))
            how[key] = f"{origin} {wanted} is not in this study: the nearest level"
        else:
            reference[key] = defaults[key]
            how[key] = f"{origin} {wanted} is not in this study: the factor's default level"
    return reference, how


def paired_metrics(metrics: Sequence[str]) -> list[str]:
    """The metrics with per-scene values (Δ columns); set-level scores (FID, KID) and time have none."""
    return [m for m in metrics if m in METRICS and METRICS[m].per_image]


def _scene_rows(group: Sequence[Observation]) -> list[dict[str, Any]]:
    return [row for obs in group for row in (obs.scenes or [])]


def _delta(group: Sequence[Observation], reference: Sequence[Observation], metric: str):
    """(delta or None, why there is none)."""
    if not group:
        return None, ""
    if not reference:
        return None, "the reference configuration was not evaluated at these settings"
    if not _scene_rows(group) or not _scene_rows(reference):
        return None, "no per-scene values to pair (eval .jsonl or a sweep trial's scenes)"
    delta = paired_delta(pairs_of(_scene_rows(group), metric), pairs_of(_scene_rows(reference), metric))
    return delta, "no (scene, seed) pair in common with the reference"


def _delta_cells(group, reference, metric, is_reference: bool, deltas: list) -> Cell:
    if is_reference:
        return Cell(text="reference")
    if not group:
        return Cell(text=NOT_EVALUATED)
    delta, why = _delta(group, reference, metric)
    if delta is not None:
        deltas.append(delta)
    return delta_cell(delta, why)


def _has_scenes(observations: Sequence[Observation]) -> bool:
    return any(obs.scenes for obs in observations)


NO_SCENES_NOTE = ("no Δ column: no per-scene values stored (eval .jsonl files, or sweep trials with a `scenes` "
                  "attribute, written since issue 27)")


CI_NOTE = ("± = 95% CI over seeds (Student t) where a configuration has several seeds, otherwise the "
           "evaluation's own CI over scenes; bold = best in column")


def one_factor_table(source: AblationSource, factor: str, factors: Sequence[str],
                     defaults: dict[str, Any], chosen: dict[str, Any] | None = None) -> Table:
    """Rows = the factor's levels, columns = metrics then their Δ vs the reference level, other factors
    at their defaults; `chosen`: the report's reference levels (`reference_levels`)."""
    others = [k for k in factors if k != factor]
    pool = select(source.observations, {k: defaults[k] for k in others})
    notes = [CI_NOTE]
    if others and sum(1 for lv in levels(source.observations, factor) if select(pool, {factor: lv})) < 2:
        # Random/TPE studies rarely hold the other factors fixed: fall back to the marginal view.
        pool = list(source.observations)
        notes.insert(0, f"too few trials at the other factors' defaults; values averaged over "
                        f"{', '.join(map(factor_label, others))}")
    elif others:
        notes.insert(0, f"other factors at defaults: {_defaults_text(defaults, others)}")
    metrics = metrics_of(source.observations)
    table = Table(title=f"{source.name}: metrics vs {factor_label(factor)}", row_header=factor_label(factor),
                  columns=[metric_label(m) for m in metrics], notes=notes)
    for level in levels(source.observations, factor):
        group = select(pool, {factor: level})
        table.rows.append(Row(str(level), [cell_stats(group, m) for m in metrics]))
    for j, metric in enumerate(metrics):
        mark_best(table.column_cells(j), higher_is_better(metric))
    paired = paired_metrics(metrics)
    if paired and _has_scenes(source.observations):
        reference, how = reference_levels(source.observations, factors, defaults, chosen)
        ref_group, deltas = select(pool, {factor: reference[factor]}), []
        table.columns += [f"Δ {metric_label(m)}" for m in paired]
        for row, level in zip(table.rows, levels(source.observations, factor)):
            group = select(pool, {factor: level})
            row.cells += [_delta_cells(group, ref_group, m, _same(level, reference[factor]), deltas) for m in paired]
        table.notes += delta_notes(deltas, f"{factor_label(factor)} = {reference[factor]} ({how[factor]})")
    elif paired:
        table.notes.append(NO_SCENES_NOTE)
    if any(c.text == NOT_EVALUATED for r in table.rows for c in r.cells if isinstance(c, Cell)):
        table.notes.append(f"{NOT_EVALUATED} = configuration not evaluated")
    return table


def grid_table(source: AblationSource, row_factor: str, col_factor: str, metric: str, factors: Sequence[str],
               defaults: dict[str, Any], chosen: dict[str, Any] | None = None) -> Table:
    """Rows × columns = two factors' levels, one metric, other factors at defaults; best cell in bold. A
    per-image metric gets a Δ column after each level: the cell's paired difference from the reference
    cell (both factors at their reference levels)."""
    others = [k for k in factors if k not in (row_factor, col_factor)]
    pool = select(source.observations, {k: defaults[k] for k in others})
    col_levels = levels(source.observations, col_factor)
    table = Table(title=f"{source.name}: {metric_label(metric)} by {factor_label(row_factor)} × {factor_label(col_factor)}",
                  row_header=f"{factor_label(row_factor)} \\ {factor_label(col_factor)}",
                  columns=[str(v) for v in col_levels], notes=[CI_NOTE.replace("best in column", "best cell")])
    if others:
        table.notes.insert(0, f"other factors at defaults: {_defaults_text(defaults, others)}")
    for level in levels(source.observations, row_factor):
        row_pool = select(pool, {row_factor: level})
        table.rows.append(Row(str(level), [cell_stats(select(row_pool, {col_factor: c}), metric) for c in col_levels]))
    mark_best([c for r in table.rows for c in r.cells], higher_is_better(metric))
    if paired_metrics([metric]) and _has_scenes(source.observations):
        _add_grid_deltas(table, source, pool, row_factor, col_factor, metric,
                         reference_levels(source.observations, factors, defaults, chosen))
    elif paired_metrics([metric]):
        table.notes.append(NO_SCENES_NOTE)
    if any(c.text == NOT_EVALUATED for r in table.rows for c in map(as_cell, r.cells)):
        table.notes.append(f"{NOT_EVALUATED} = combination not evaluated")
    return table


def _add_grid_deltas(table: Table, source: AblationSource, pool, row_factor: str, col_factor: str, metric: str,
                     references: tuple[dict[str, Any], dict[str, str]]) -> None:
    """Interleaves a "Δ <level>" column after every column level of a grid."""
    reference, how = references
    ref_group = select(pool, {row_factor: reference[row_factor], col_factor: reference[col_factor]})
    col_levels = levels(source.observations, col_factor)
    deltas: list = []
    table.columns = [name for level in col_levels for name in (str(level), f"Δ {level}")]
    for row, row_level in zip(table.rows, levels(source.observations, row_factor)):
        cells = []
        for value, col_level in zip(row.cells, col_levels):
            group = select(pool, {row_factor: row_level, col_factor: col_level})
            is_reference = _same(row_level, reference[row_factor]) and _same(col_level, reference[col_factor])
            cells += [value, _delta_cells(group, ref_group, metric, is_reference, deltas)]
        row.cells = cells
    table.notes += delta_notes(deltas, f"{factor_label(row_factor)} = {reference[row_factor]} "
                                       f"({how[row_factor]}), {factor_label(col_factor)} = "
                                       f"{reference[col_factor]} ({how[col_factor]})")


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text).strip("_").lower()


def ablation_tables(source: AblationSource, reference: dict[str, Any] | None = None) -> list[tuple[str, Table]]:
    """(file stem, table) for every one-factor table and every two-factor grid of every metric;
    `reference`: the Δ columns' reference levels by dotted key (default `PAPER_SETTING`)."""
    factors = find_factors(source.observations)
    defaults = default_levels(source.observations, factors)
    name = _slug(source.name)
    tables = [(f"ablation_{name}_{_slug(f)}", one_factor_table(source, f, factors, defaults, reference))
              for f in factors]
    for a, b in itertools.combinations(factors, 2):
        for metric in metrics_of(source.observations):
            grid = grid_table(source, a, b, metric, factors, defaults, reference)
            if sum(c.is_number for r in grid.rows for c in r.cells) >= 2:
                tables.append((f"ablation_{name}_{_slug(a)}_x_{_slug(b)}_{_slug(metric)}", grid))
    return tables


# ---------------------------------------------------------------------------------------- Pareto
@dataclass
class Configuration:
    label: str
    seconds_per_image: float
    quality: float
    ci95: float | None


def pareto_front(points: Sequence[Configuration], higher_is_better_quality: bool) -> list[int]:
    """Indices of configurations no other one beats on both time (lower) and quality, fastest first."""
    sign = 1.0 if higher_is_better_quality else -1.0
    order = sorted(range(len(points)), key=lambda i: (points[i].seconds_per_image, -sign * points[i].quality))
    front, best = [], -math.inf
    for i in order:
        if sign * points[i].quality > best:
            front.append(i)
            best = sign * points[i].quality
    return front


def configurations(source: AblationSource, factors: Sequence[str], metric: str) -> list[Configuration]:
    """One point per distinct setting of all factors (seeds averaged), with a time and a metric value."""
    groups: dict[str, list[Observation]] = {}
    for obs in source.observations:
        label = ", ".join(f"{k.rsplit('.', 1)[-1]}={obs.params.get(k)}" for k in factors)
        groups.setdefault(label, []).append(obs)
    points = []
    for label, group in groups.items():
        quality, timing = cell_stats(group, metric), cell_stats(group, "seconds_per_image")
        if quality.is_number and timing.is_number:
            points.append(Configuration(label, timing.value, quality.value, quality.ci95))
    return points


# --------------------------------------------------------------------------------------- figures
def ablation_figures(source: AblationSource, out_dir: Path) -> list[tuple[str, Path]]:
    """Metric vs factor (CI error bars) per factor, and quality vs time Pareto fronts."""
    factors = find_factors(source.observations)
    defaults = default_levels(source.observations, factors)
    name = _slug(source.name)
    quality = [m for m in metrics_of(source.observations) if m != "seconds_per_image"]
    made = []
    for factor in factors:
        table = one_factor_table(source, factor, factors, defaults)
        panels = {}
        for j, metric in enumerate(quality):
            cells = table.column_cells(j)
            if any(c.is_number for c in cells):
                panels[metric_label(metric)] = ([c.value if c.is_number else math.nan for c in cells],
                                                [c.ci95 if c.is_number and c.ci95 is not None else 0.0 for c in cells])
        if panels:
            path = out_dir / f"ablation_{name}_{_slug(factor)}.png"
            figures.plot_factor([r.label for r in table.rows], panels, factor_label(factor),
                                f"{source.name}: metrics vs {factor_label(factor)} (mean ± 95% CI)", path)
            made.append((f"{source.name}: metrics vs {factor_label(factor)}", path))
    for metric in quality:
        points = configurations(source, factors, metric)
        if len(points) >= 2 and higher_is_better(metric) is not None:
            path = out_dir / f"pareto_{name}_{_slug(metric)}.png"
            front = pareto_front(points, higher_is_better(metric))
            figures.plot_pareto(points, front, metric_label(metric),
                                f"{source.name}: {metric_label(metric)} vs sampling time (Pareto front)", path)
            made.append((f"{source.name}: {metric_label(metric)} vs time, Pareto front", path))
    return made
