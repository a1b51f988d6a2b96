"""The method comparison: every method's eval JSON side by side on the same test set.

Rows are the non-generative references, ControlNet, DiffusionSat and SatDiffMoE (typically with N = 1
and with all LR images), in that order; columns are the metrics the evaluations share, then trainable
and total parameter counts and sampling time. Evaluations from more than one folder (several runs'
eval/, which often share an eval name) also get run and checkpoint columns. Numbers are only
comparable on the same scenes, so evaluations over different numbers of scenes are flagged in the log
and in the table notes.

The last columns are Δ vs a reference evaluation for the group's paired metrics (`PAIRED`), from the
eval/<name>.jsonl rows (reports/paired.py): SatDiffMoE with N = 8 by default, or the eval named by
`satdiffmoe report --methods-reference NAME`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ..errors import UserError
from ..evaluation.catalog import GROUP_TITLES, GROUPS, METRICS
from .paired import delta_cell, delta_notes, paired_delta, pairs_of
from .sources import EvalSummary, higher_is_better, method_name, metric_label, ordered_metrics
from .tables import Cell, Row, Table, mark_best

log = logging.getLogger(__name__)

REFERENCES = ("bicubic_nearest", "mean_bicubic", "autoencoder")
# free uncertainty maps scored against a model's error (evaluation/uncertainty_references.py): rows of
# the calibration table only, after the model rows
UNCERTAINTY_REFERENCES = ("unc_constant", "unc_lr_std")
# sees the HR (D(E(HR))): the cap of every latent method, shown for scale and never marked best
ORACLES = ("autoencoder",)
METHOD_ORDER = ("bicubic_nearest", "mean_bicubic", "autoencoder", "srcnn", "highresnet", "rams", "controlnet", "diffusionsat",
                "satdiffmoe", *UNCERTAINTY_REFERENCES)


TRAINABLE_LABELS = {"lora": "LoRA", "new_only": "new inputs only"}  # train.trainable other than all


def row_label(summary: EvalSummary) -> str:
    label = method_name(summary.method)
    num_lr = summary.data.get("num_lr")
    if summary.method not in REFERENCES and num_lr is not None:
        trained = TRAINABLE_LABELS.get(summary.data.get("trainable"))
        label += f" (N = {'all' if num_lr == -1 else num_lr}{', ' + trained if trained else ''})"
    return label


def _order(summary: EvalSummary):
    method = summary.method
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    num_lr = summary.data.get("num_lr")
    return (rank, method, float("inf") if num_lr in (None, -1) else float(num_lr), summary.name)


def _metric_cell(entry) -> Cell:
    if not isinstance(entry, dict):
        return Cell(unavailable="not computed in this evaluation")
    if "unavailable" in entry:
        return Cell(unavailable=str(entry["unavailable"]))
    if isinstance(entry.get("mean"), (int, float)):
        # set-level scores have no CI over scenes; KID carries its std over random subsets instead
        spread = entry.get("ci95") if entry.get("ci95") is not None else entry.get("std")
        return Cell(value=float(entry["mean"]), ci95=spread, n=entry.get("n"))
    return Cell(unavailable="no value recorded")


# the metrics with a Δ column, per table: the headline per-image ones and each group's main ones
PAIRED = ("psnr", "ssim", "lr_psnr", "lpips", "sam", "consistency_l1", "unc_spearman", "ause")
DEFAULT_REFERENCE = ("satdiffmoe", 8)  # the paper's method with every LR of the quickstart


def reference_summary(summaries: Sequence[EvalSummary], name: str | None = None) -> tuple[EvalSummary | None, str]:
    """(the Δ columns' reference evaluation, how it was chosen): the eval called `name`, else SatDiffMoE
    N = 8, else the SatDiffMoE evaluation with the most LRs (N = all counts as most), else none."""
    if name is not None:
        match = [s for s in summaries if s.name == name]
        if not match:
            raise UserError(f"--methods-reference {name}: no such evaluation; the evaluations are "
                            f"{', '.join(s.name for s in summaries)}")
        return match[0], "given"
    ours = [s for s in summaries if s.method == DEFAULT_REFERENCE[0]]
    exact = [s for s in ours if s.data.get("num_lr") == DEFAULT_REFERENCE[1]]
    if exact:
        return exact[0], "default"
    if ours:
        best = max(ours, key=lambda s: float("inf") if s.data.get("num_lr") == -1 else s.data.get("num_lr") or 0)
        return best, "SatDiffMoE N = 8 was not evaluated: the SatDiffMoE evaluation with the most LRs"
    return None, "no SatDiffMoE evaluation"


def _delta_columns(table: Table, summaries: Sequence[EvalSummary], metrics: Sequence[str],
                   reference: EvalSummary | None, how: str) -> None:
    paired = [m for m in metrics if m in PAIRED and METRICS[m].per_image]
    if not paired or reference is None or reference not in summaries:
        if paired:
            table.notes.append(f"no Δ column: {how if reference is None else 'the reference has no value here'}")
        return
    if reference.per_scene() is None:
        table.notes.append(f"no Δ column: {reference.path.with_suffix('.jsonl')} (the reference's per-scene rows) "
                           "is missing")
        return
    table.columns += [f"Δ {metric_label(m)}" for m in paired]
    deltas = []
    for row, summary in zip(table.rows, summaries):
        for metric in paired:
            if summary is reference:
                row.cells.append(Cell(text="reference"))
                continue
            rows = summary.per_scene()
            delta = None if rows is None else paired_delta(pairs_of(rows, metric), pairs_of(reference.per_scene(), metric))
            if delta is not None:
                deltas.append(delta)
            own = _metric_cell(summary.metrics.get(metric))  # a metric undefined for the row has an undefined Δ
            why = own.unavailable if own.missing_label == "undefined" else \
                "no per-scene rows (eval .jsonl) to pair" if rows is None else \
                "no (scene, seed) pair with a value in common with the reference"
            row.cells.append(delta_cell(delta, why))
    label = f"{row_label(reference)}, eval {reference.name}" + ("" if how in ("given", "default") else f" ({how})")
    table.notes += delta_notes(deltas, label)


def run_label(summary: EvalSummary) -> str:
    """`<experiment>/<run>` of an eval/<name>.json in <run_root>/<experiment>/<run>/eval/ (its folder
    elsewhere)."""
    folder = summary.path.parent
    run = folder.parent if folder.name == "eval" else folder
    return f"{run.parent.name}/{run.name}" if run.parent.name else run.name


def checkpoint_label(summary: EvalSummary) -> str:
    ckpt = summary.data.get("ckpt")
    return Path(str(ckpt)).name if ckpt else "—"  # references load no checkpoint


def _count_cell(value) -> Cell:
    return Cell(value=int(value)) if isinstance(value, (int, float)) else Cell(text="—")


def scene_count_warning(summaries: Sequence[EvalSummary]) -> str | None:
    counts = {s.name: s.data.get("num_scenes") for s in summaries}
    if len(set(counts.values())) <= 1:
        return None
    listed = ", ".join(f"{name}: {n}" for name, n in counts.items())
    return f"evaluations use different numbers of test scenes ({listed}); numbers are not directly comparable"


GROUP_NOTES = {
    "perceptual": ["LPIPS: AlexNet v0.1; FID/KID: TF-Inception pool features (docs/metrics.md). A few dozen "
                   "scenes make FID biased and noisy: compare KID, whose ± is its std over random subsets"],
    "protocol": ["the upsampled-LR reference of PSNR ratio, synthesis and correctness is the mean of the "
                 "bicubic LRs; definitions in docs/metrics.md (WorldStrat, opensr-test)"],
    "calibration": ["per-scene Spearman ρ between the uncertainty map and |output − HR|, and the area between "
                    "its sparsification curve and the oracle's (AUSE, lower is better)"],
}
FREE_MAPS_NOTE = ("free maps (constant; per-pixel std of the bicubic LRs across dates) are scored against the "
                  "error of the evaluation named in their eval column (…_unc_*); a constant map has no ρ and the "
                  "AUSE of a random ranking")


def methods_table(summaries: Sequence[EvalSummary], group: str = "fidelity",
                  reference: str | None = None) -> Table | None:
    """One metric group's comparison (None when no evaluation has a metric of that group); the
    fidelity table also carries the NFE, parameter counts and sampling time; then the Δ columns
    against `reference` (an eval name; default `reference_summary`'s choice)."""
    ref, how = reference_summary(summaries, reference)
    summaries = sorted(summaries, key=_order)
    # evaluations of several runs often share an eval name (satdiffmoe_n8): where they came from tells them apart
    several_runs = len({s.path.parent for s in summaries}) > 1
    if group != "calibration":
        summaries = [s for s in summaries if s.method not in UNCERTAINTY_REFERENCES]
    present = {m for s in summaries for m in s.metrics}
    metrics = [m for m in ordered_metrics(present) if (METRICS[m].group if m in METRICS else "fidelity") == group]
    if not metrics:
        return None
    first = group == "fidelity"
    left_out: list[str] = []
    why: list[str] = []
    if not first:  # a row with no number in this group (e.g. no uncertainty map) says nothing here
        shown = [s for s in summaries if any(_metric_cell(s.metrics.get(m)).is_number for m in metrics)]
        left_out = [row_label(s) for s in summaries if s not in shown]
        why = sorted({_metric_cell(s.metrics.get(m)).unavailable for s in summaries if s not in shown for m in metrics})
        summaries = shown
        if not summaries:
            return None
    origin = ["run", "checkpoint"] if several_runs else []
    leading = ["eval", *origin, "scenes", "NFE"] if first else ["eval", *origin]
    trailing = ["trainable params", "total params", "time (s/image)"] if first else []
    title = "Method comparison on the test set" + ("" if first else f": {GROUP_TITLES[group]}")
    table = Table(title=title, row_header="method", columns=leading + [metric_label(m) for m in metrics] + trailing,
                  notes=["± = 95% CI reported by the evaluation; bold = best in column"] + GROUP_NOTES.get(group, []))
    for s in summaries:
        params = s.data.get("params") or {}
        seconds = s.data.get("seconds_per_image")
        cells = [s.name] + ([run_label(s), checkpoint_label(s)] if several_runs else [])
        cells += ([_count_cell(s.data.get("num_scenes")), _count_cell(s.data.get("nfe"))] if first else [])
        cells += [_metric_cell(s.metrics.get(m)) for m in metrics]
        if first:
            cells += [_count_cell(params.get("trainable")), _count_cell(params.get("total")),
                      Cell(value=float(seconds)) if isinstance(seconds, (int, float))
                      else Cell(unavailable="no timing recorded")]
        table.rows.append(Row(row_label(s), cells))
    contenders = [i for i, s in enumerate(summaries) if s.method not in ORACLES]
    for j, metric in enumerate(metrics, start=len(leading)):
        cells = table.column_cells(j)
        mark_best([cells[i] for i in contenders], higher_is_better(metric))
    if len(contenders) < len(summaries):
        table.notes.append("the autoencoder row reconstructs the HR itself (the cap of every latent method); "
                           "it is never marked best")
    _delta_columns(table, summaries, metrics, ref, how)
    if any(s.method in UNCERTAINTY_REFERENCES for s in summaries):
        table.notes.append(FREE_MAPS_NOTE)
    if left_out:
        table.notes.append(f"not shown, no value in this table: {', '.join(left_out)} ({'; '.join(why)})")
    warning = scene_count_warning(summaries)
    if warning:
        log.warning(warning)
        table.notes.insert(0, f"WARNING: {warning}")
    return table


def method_tables(summaries: Sequence[EvalSummary], reference: str | None = None) -> list[tuple]:
    """(file stem, table) per metric group that the evaluations have: methods, methods_perceptual, ...;
    `reference`: the eval name the Δ columns compare with (default SatDiffMoE N = 8)."""
    tables = []
    for group in GROUPS:
        table = methods_table(summaries, group, reference)
        if table is not None:
            tables.append(("methods" if group == "fidelity" else f"methods_{group}", table))
    return tables
