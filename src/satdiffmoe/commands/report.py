"""`satdiffmoe report`: convergence, ablation and method-comparison tables and figures, indexed in report.md.

    satdiffmoe report --runs runs/synth_satdiffmoe runs/synth_controlnet --thresholds val/psnr=20 \\
                      --study runs/sweeps/fusion journal:sweep.log --evals runs/x/1/eval --out reports/

Every input is read (and checked) before anything is written, so a bad path fails fast with one line.
Everything in --out is regenerated from the input files by re-running the command printed in report.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from . import add_command

if TYPE_CHECKING:
    from ..reports.sources import AblationSource, EvalSummary, TrainingRun
    from ..reports.tables import Table

log = logging.getLogger(__name__)
HELP = "convergence plots, ablation and method tables from runs/studies/evals"


def register(subparsers) -> None:
    p = add_command(subparsers, "report", HELP)
    p.add_argument("--runs", nargs="*", default=[], help="training run folders (convergence curves)")
    p.add_argument("--study", nargs="*", default=[], help="sweep folders or Optuna storages (ablation tables)")
    p.add_argument("--evals", nargs="*", default=[], help="eval JSON files or folders (method comparison)")
    p.add_argument("--thresholds", nargs="*", default=[], metavar="metric=value",
                   help="convergence thresholds, e.g. val/psnr=20")
    p.add_argument("--ablation-reference", nargs="*", default=[], metavar="key=value",
                   help="reference row of the ablation tables' Δ columns, e.g. sampler.fusion_every=5 "
                        "(default: the paper's setting, fusion every 5, NFE 50, N = 8)")
    p.add_argument("--methods-reference", default=None, metavar="EVAL_NAME",
                   help="reference row of the method tables' Δ columns (default: SatDiffMoE with N = 8)")
    p.add_argument("--out", required=True, help="output folder for tables (md, tex, csv) and figures (png)")


@dataclass
class Section:
    title: str
    intro: str
    tables: list[tuple[Table, dict[str, Path]]] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def _unique(stem: str, used: set) -> str:
    candidate, k = stem, 2
    while candidate in used:
        candidate, k = f"{stem}_{k}", k + 1
    used.add(candidate)
    return candidate


def _write_tables(section: Section, tables: list[tuple[str, Table]], out: Path, used: set) -> None:
    from ..reports.tables import write_table

    for stem, table in tables:
        section.tables.append((table, write_table(table, out, _unique(stem, used))))


def convergence_section(runs: list[TrainingRun], threshold_args: list[str], out: Path, used: set) -> Section:
    from ..reports.convergence import (
        convergence_figures,
        convergence_tables,
        default_thresholds,
        parse_thresholds,
        validation_metrics,
    )

    metrics = validation_metrics(runs)
    if not metrics:
        raise UserError("the training runs log no validation metrics (val/...) yet; convergence needs val/psnr or similar")
    thresholds = parse_thresholds(threshold_args, metrics) or default_thresholds(runs, metrics)
    methods = sorted({r.method for r in runs})
    section = Section("Convergence", f"{len(runs)} training runs ({', '.join(methods)}), read from their metrics.jsonl.")
    _write_tables(section, convergence_tables(runs, thresholds, derived=not threshold_args), out, used)
    section.figures = convergence_figures(runs, thresholds, out)
    return section


def parse_reference(items: list[str]) -> dict[str, str]:
    """`key=value` items -> {dotted key: value}; the tables compare the value with each level as text."""
    reference = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise UserError(f"--ablation-reference {item}: expected key=value, e.g. sampler.fusion_every=5")
        reference[key] = value
    return reference


def ablation_section(source: AblationSource, out: Path, used: set, reference: dict | None = None) -> Section:
    from ..reports.ablation import ablation_figures, ablation_tables

    section = Section(f"Ablation: {source.name}",
                      f"{len(source.observations)} evaluated configurations from {source.origin}.")
    tables = ablation_tables(source, reference)
    if not tables:
        section.intro += " No key takes more than one value, so there is nothing to ablate."
    _write_tables(section, tables, out, used)
    section.figures = ablation_figures(source, out)
    return section


def methods_section(evals: list[EvalSummary], out: Path, used: set, reference: str | None = None) -> Section:
    from ..reports import figures
    from ..reports.methods import method_tables, row_label

    section = Section("Method comparison", f"{len(evals)} evaluation summaries.")
    _write_tables(section, method_tables(evals, reference), out, used)
    curves = {row_label(s): (c["fractions"], c["curve"], c["oracle"])
              for s in evals if isinstance(c := s.data.get("sparsification"), dict)}
    if curves:
        path = figures.plot_sparsification(curves, out / "sparsification.png",
                                           "Uncertainty calibration: sparsification (dashed: oracle)")
        section.figures.append(("Sparsification curves of the sampler's uncertainty map", path))
    return section


def render_index(sections: list[Section], out: Path, command: str) -> str:
    from ..reports.tables import to_markdown

    lines = ["# SatDiffMoE report", "", "Regenerate everything in this folder with:", "",
             f"    {command}", ""]
    for section in sections:
        lines += [f"## {section.title}", "", section.intro, ""]
        for table, paths in section.tables:
            links = " · ".join(f"[{fmt}]({p.relative_to(out)})" for fmt, p in paths.items())
            lines += [to_markdown(table), f"Files: {links}", ""]
        for caption, path in section.figures:
            lines += [f"![{caption}]({path.relative_to(out)})", "", f"*{caption}* ([png]({path.relative_to(out)}))", ""]
    return "\n".join(lines)


def _command_line(args: argparse.Namespace) -> str:
    parts = ["satdiffmoe", "report"]
    for flag, values in (("--runs", args.runs), ("--study", args.study), ("--evals", args.evals),
                         ("--thresholds", args.thresholds), ("--ablation-reference", args.ablation_reference),
                         ("--methods-reference", [args.methods_reference] if args.methods_reference else [])):
        if values:
            parts += [flag, *values]
    return shlex.join(parts + ["--out", str(args.out)])


def check_report_folder(out: Path) -> None:
    """`out` is, or can become, a writable folder (nothing is created yet)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for the report")
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(f"cannot create report folder {out}: {existing} is not a writable folder; choose another --out")


def move_into(built: Path, out: Path) -> None:
    """The built report becomes `out`, or its files replace their namesakes in an existing `out`
    (renames only: nothing more to write)."""
    if not out.exists():
        os.replace(built, out)
        return
    for path in sorted(built.rglob("*")):
        if path.is_file():
            target = out / path.relative_to(built)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)


def warn_duplicate_names(evals) -> list[str]:
    """Several runs' eval/ folders often hold the same eval name (`satdiffmoe_n8`): their table rows
    differ only in their run and checkpoint columns. Say which files share a name. Returns the warnings."""
    by_name: dict[str, list] = {}
    for summary in evals:
        by_name.setdefault(summary.name, []).append(summary.path)
    warnings = [f"{len(paths)} evaluations are named '{name}' ({', '.join(map(str, paths))}); their rows in the "
                "method tables differ only in their run and checkpoint columns; evaluate with distinct "
                "eval.name=... for rows of their own names"
                for name, paths in by_name.items() if len(paths) > 1]
    for line in warnings:
        log.warning("%s", line)
    return warnings


def warn_mixed_evaluations(evals) -> list[str]:
    """`evaluate` stamps a model's JSON and its references' with one evaluation id; a sibling file of the
    set with another id comes from another (possibly interrupted) evaluation. Returns the warnings."""
    warnings = []
    for summary in evals:
        stamp = summary.data.get("evaluation") or {}
        for name in stamp.get("files", []):
            sibling = summary.path.with_name(f"{name}.json")
            if name == summary.name or not sibling.is_file():
                continue
            try:
                other = json.loads(sibling.read_text()).get("evaluation") or {}
            except (OSError, ValueError):
                other = {}
            if other.get("id") != stamp.get("id"):
                warnings.append(f"{sibling} is not from the same evaluation as {summary.path} (it was written by "
                                "another or an interrupted `satdiffmoe evaluate`); re-run that evaluation to "
                                "compare them on equal terms")
    for line in dict.fromkeys(warnings):
        log.warning("%s", line)
    return warnings


def run(args: argparse.Namespace) -> int:
    from ..reports.sources import read_ablation_sources, read_eval_summaries, read_training_runs

    if not (args.runs or args.study or args.evals):
        raise UserError("nothing to report: pass --runs (training runs), --study (sweeps) and/or --evals (eval JSONs)")
    if args.thresholds and not args.runs:
        raise UserError("--thresholds applies to convergence curves; pass the training runs with --runs")
    out = Path(args.out)
    check_report_folder(out)  # before reading: a wrong --out is known at once
    reference = parse_reference(args.ablation_reference)
    runs = read_training_runs(args.runs)
    studies = [source for spec in args.study for source in read_ablation_sources(spec)]
    evals = read_eval_summaries(args.evals)
    warn_mixed_evaluations(evals)
    warn_duplicate_names(evals)
    # built in a hidden folder beside --out and moved in once every file is written: a full disk
    # leaves --out as it was, and no half-written report
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
        used: set = set()
        sections = []
        if runs:
            log.info("convergence of %d runs", len(runs))
            sections.append(convergence_section(runs, args.thresholds, partial, used))
        for source in studies:
            log.info("ablation tables of %s (%d configurations)", source.name, len(source.observations))
            sections.append(ablation_section(source, partial, used, reference))
        if evals:
            log.info("method comparison of %d evaluations", len(evals))
            sections.append(methods_section(evals, partial, used, args.methods_reference))
        (partial / "report.md").write_text(render_index(sections, partial, _command_line(args)))
        move_into(partial, out)
    except OSError as exc:
        raise UserError(f"cannot write the report into {out}: {exc.strerror or exc}; free some space and run "
                        f"report again ({out} is as it was)") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    index = out / "report.md"
    print(index)
    return 0
