"""One table model, three renderings: Markdown (for report.md), LaTeX booktabs (for papers), CSV (for tools).

Every report table is built once as a `Table` of `Cell`s and written by `write_table`, so the three
files always hold the same numbers. A numeric cell carries its mean, an optional 95% CI half-width and
the number of values behind it; a cell that could not be computed carries its reason as text and is
shown as "unavailable" (the reason goes into the table notes), never as a number.

    table = Table("PSNR vs NFE", row_header="NFE", columns=["PSNR (dB)"], rows=[Row("10", [Cell(24.1, 0.3, 3)])])
    write_table(table, out_dir, "ablation_nfe")   # -> ablation_nfe.md, .tex, .csv
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Cell:
    """One table entry: a number (± CI over `n` values), a plain text label, or an unavailable metric."""

    value: float | None = None
    ci95: float | None = None
    n: int | None = None
    text: str | None = None  # shown verbatim (a label such as "not reached", "> 12.0×")
    unavailable: str | None = None  # reason a metric could not be computed
    best: bool = False
    decimals: int | None = None  # None: four significant digits
    # a paired difference (reports/paired.py): its 95% CI [low, high], shown signed with the interval,
    # and `marked` (an asterisk) when the interval excludes 0
    interval: tuple[float, float] | None = None
    marked: bool = False

    @property
    def is_number(self) -> bool:
        return self.value is not None and self.unavailable is None

    @property
    def missing_label(self) -> str:
        """What an unavailable cell shows: "undefined" where the metric has no value by definition (the
        evaluator's reasons say "undefined ...", e.g. the ρ of a constant map), else "unavailable"."""
        return "undefined" if (self.unavailable or "").startswith("undefined") else "unavailable"

    @property
    def missing_note(self) -> str:
        """The cell's reason as a note line (an undefined one already says so)."""
        return self.unavailable if self.missing_label == "undefined" else f"unavailable: {self.unavailable}"


CellLike = Cell | str | int | float | None


@dataclass
class Row:
    label: str
    cells: list[CellLike]


@dataclass
class Table:
    title: str
    row_header: str
    columns: list[str]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cell(self, row: int, column: int) -> Cell:
        return as_cell(self.rows[row].cells[column])

    def column_cells(self, column: int) -> list[Cell]:
        return [as_cell(r.cells[column]) for r in self.rows]

    def all_notes(self) -> list[str]:
        """The table's notes plus one line per distinct reason a cell is unavailable."""
        reasons = []
        for row in self.rows:
            for c in map(as_cell, row.cells):
                if c.unavailable and c.missing_note not in reasons:
                    reasons.append(c.missing_note)
        return list(self.notes) + reasons


def as_cell(x: CellLike) -> Cell:
    if isinstance(x, Cell):
        return x
    if x is None:
        return Cell(text="")
    if isinstance(x, (bool, str)):
        return Cell(text=str(x))
    return Cell(value=float(x)) if isinstance(x, float) else Cell(value=int(x))


def mark_best(cells: Sequence[Cell], higher_is_better: bool | None) -> None:
    """Flags the best numeric cell(s) (ties all flagged); text and unavailable cells never win.
    `higher_is_better=None` (a metric with no better direction) flags nothing."""
    if higher_is_better is None:
        return
    numbers = [c.value for c in cells if c.is_number and math.isfinite(c.value)]
    if not numbers:
        return
    best = max(numbers) if higher_is_better else min(numbers)
    for c in cells:
        c.best = c.is_number and c.value == best


# ----------------------------------------------------------------------------------------- numbers
def decimals_for(value: float) -> int:
    """Four significant digits, at most 4 decimals: 24.13, 0.8123, 0.0123, 1234."""
    if value == 0 or not math.isfinite(value):
        return 2
    return int(min(4, max(0, 3 - math.floor(math.log10(abs(value))))))


def format_number(value: float, decimals: int | None = None) -> str:
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{decimals_for(value) if decimals is None else decimals}f}"


def _number_text(c: Cell, pm: str) -> str:
    if c.interval is not None:
        decimals = decimals_for(max(abs(c.value), *map(abs, c.interval))) if c.decimals is None else c.decimals
        low, high = c.interval
        return f"{c.value:+.{decimals}f} [{low:+.{decimals}f}, {high:+.{decimals}f}]" + ("*" if c.marked else "")
    decimals = 0 if isinstance(c.value, int) else decimals_for(c.value) if c.decimals is None else c.decimals
    text = format_number(c.value, decimals)
    if c.ci95 is not None and math.isfinite(c.ci95):
        text += f"{pm}{c.ci95:.{decimals}f}"
    return text


# --------------------------------------------------------------------------------------- Markdown
def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _md_cell(c: Cell) -> str:
    if c.unavailable is not None:
        return c.missing_label
    if not c.is_number:
        return _md_escape(c.text or "")
    text = _number_text(c, " ± ")
    return f"**{text}**" if c.best else text


def to_markdown(table: Table) -> str:
    header = [table.row_header] + table.columns
    lines = [f"**{_md_escape(table.title)}**", ""]
    lines.append("| " + " | ".join(_md_escape(h) for h in header) + " |")
    lines.append("|" + "|".join([":---"] + ["---:"] * len(table.columns)) + "|")
    for row in table.rows:
        cells = [_md_escape(row.label)] + [_md_cell(as_cell(c)) for c in row.cells]
        lines.append("| " + " | ".join(cells) + " |")
    notes = table.all_notes()
    if notes:
        lines.append("")
        lines.extend(f"- {_md_escape(n)}" for n in notes)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ LaTeX
_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "≥": r"$\geq$", "≤": r"$\leq$", ">": r"$>$", "<": r"$<$",
}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_cell(c: Cell) -> str:
    if c.unavailable is not None:
        return rf"\textit{{{c.missing_label}}}"
    if not c.is_number:
        return latex_escape(c.text or "")
    text = _number_text(c, r" $\pm$ ")
    return rf"\textbf{{{text}}}" if c.best else text


def to_latex(table: Table, label: str | None = None) -> str:
    """A booktabs `table` float; needs `\\usepackage{booktabs}` in the paper's preamble."""
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        rf"\caption{{{latex_escape(table.title)}}}",
    ]
    if label:
        lines.append(rf"\label{{{label}}}")  # labels are identifiers: underscores stay raw
    lines += [
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in [table.row_header] + table.columns) + r" \\",
        r"\midrule",
    ]
    for row in table.rows:
        lines.append(" & ".join([latex_escape(row.label)] + [_tex_cell(as_cell(c)) for c in row.cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = table.all_notes()
    if notes:
        lines.append(r"\par\footnotesize " + r" \\ ".join(latex_escape(n) for n in notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------- CSV
def to_csv(table: Table) -> str:
    """Machine-readable: raw numbers (full precision), `<col> ci95`/`<col> n`/`<col> best` where present,
    and for a paired-difference column `<col> ci_low`/`<col> ci_high`/`<col> significant` (*)."""
    extras: list[list[str]] = []
    for j in range(len(table.columns)):
        cells = table.column_cells(j)
        extras.append([kind for kind, present in (
            ("ci95", any(c.ci95 is not None for c in cells)),
            ("n", any(c.n is not None for c in cells)),
            ("best", any(c.best for c in cells)),
            ("ci_low", any(c.interval is not None for c in cells)),
            ("ci_high", any(c.interval is not None for c in cells)),
            ("significant", any(c.interval is not None for c in cells)),
        ) if present])
    header = [table.row_header]
    for name, kinds in zip(table.columns, extras):
        header += [name] + [f"{name} {k}" for k in kinds]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in table.rows:
        out = [row.label]
        for c, kinds in zip(map(as_cell, row.cells), extras):
            if c.unavailable is not None:
                out.append(c.missing_note)
            else:
                out.append(repr(c.value) if c.is_number and isinstance(c.value, float) else
                           str(c.value) if c.is_number else (c.text or ""))
            for kind in kinds:
                if kind == "ci95":
                    out.append("" if c.ci95 is None else repr(float(c.ci95)))
                elif kind == "n":
                    out.append("" if c.n is None else str(c.n))
                elif kind in ("ci_low", "ci_high"):
                    out.append("" if c.interval is None else repr(float(c.interval[kind == "ci_high"])))
                elif kind == "significant":
                    out.append("" if c.interval is None else "*" if c.marked else "")
                else:
                    out.append("*" if c.best else "")
        writer.writerow(out)
    return buffer.getvalue()


def write_table(table: Table, out_dir: Path, stem: str) -> dict[str, Path]:
    """Writes <stem>.md, <stem>.tex and <stem>.csv; returns {"md": path, "tex": path, "csv": path}."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {fmt: out_dir / f"{stem}.{fmt}" for fmt in ("md", "tex", "csv")}
    paths["md"].write_text(to_markdown(table))
    paths["tex"].write_text(to_latex(table, label=f"tab:{stem}"))
    paths["csv"].write_text(to_csv(table))
    return paths
