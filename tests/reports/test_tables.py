"""One table model, three renderings that agree: Markdown, LaTeX (booktabs) and CSV."""

from __future__ import annotations

import csv
import io
import re

from satdiffmoe.reports.tables import Cell, Row, Table, latex_escape, mark_best, to_csv, to_latex, to_markdown


def sample_table() -> Table:
    table = Table(title="val_psnr & friends: 100% honest", row_header="fusion_every",
                  columns=["PSNR (dB)", "LPIPS", "note"])
    table.rows = [
        Row("1", [Cell(24.1234, 0.31, 2), Cell(unavailable="no LPIPS weights"), "fast_path"]),
        Row("off", [Cell(26.5, 0.2, 2), Cell(unavailable="no LPIPS weights"), "not reached"]),
    ]
    mark_best(table.column_cells(0), higher_is_better=True)
    return table


def test_best_cell_is_bold_in_markdown_and_latex_and_starred_in_csv():
    table = sample_table()
    assert "**26.50 ± 0.20**" in to_markdown(table)
    assert r"\textbf{26.50 $\pm$ 0.20}" in to_latex(table)
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert [r["PSNR (dB) best"] for r in rows] == ["", "*"]
    assert rows[0]["PSNR (dB)"] == "24.1234" and rows[0]["PSNR (dB) ci95"] == "0.31" and rows[0]["PSNR (dB) n"] == "2"


def test_latex_is_structurally_valid_booktabs():
    tex = to_latex(sample_table(), label="tab:ablation_nfe")
    assert r"\label{tab:ablation_nfe}" in tex
    assert tex.count(r"\begin{") == tex.count(r"\end{") == 2
    assert [tex.count(rule) for rule in (r"\toprule", r"\midrule", r"\bottomrule")] == [1, 1, 1]
    assert tex.index(r"\toprule") < tex.index(r"\midrule") < tex.index(r"\bottomrule")
    assert re.search(r"\\begin\{tabular\}\{lrrr\}", tex)
    body = tex[tex.index(r"\toprule"):tex.index(r"\bottomrule")]
    data_lines = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(data_lines) == 3 and all(line.count(" & ") == 3 for line in data_lines)
    without_separators = tex.replace(" & ", " ").replace(r"\label{tab:ablation_nfe}", "")
    assert re.search(r"(?<!\\)[_%&#]", without_separators) is None  # every _ % & # escaped
    assert r"fusion\_every" in tex and r"fast\_path" in tex and r"100\%" in tex


def _balanced(tex: str) -> bool:
    depth = 0
    for match in re.finditer(r"(?<!\\)[{}]", tex):
        depth += 1 if match.group() == "{" else -1
        if depth < 0:
            return False
    return depth == 0


def test_latex_braces_are_balanced():
    assert _balanced(to_latex(sample_table()))


def test_unavailable_cells_render_as_text_with_reason_in_notes():
    table = sample_table()
    assert "| unavailable |" in to_markdown(table)
    assert "- unavailable: no LPIPS weights" in to_markdown(table)
    assert r"\textit{unavailable}" in to_latex(table)
    rows = list(csv.DictReader(io.StringIO(to_csv(table))))
    assert rows[1]["LPIPS"] == "unavailable: no LPIPS weights"


def test_unavailable_and_text_cells_never_win_best():
    cells = [Cell(unavailable="x"), Cell(text="not reached"), Cell(3.0), Cell(1.0)]
    mark_best(cells, higher_is_better=False)
    assert [c.best for c in cells] == [False, False, False, True]


def test_latex_escape_handles_special_characters():
    assert latex_escape("a_b & c% $d #e ~ ^ {x} ±") == (
        r"a\_b \& c\% \$d \#e \textasciitilde{} \textasciicircum{} \{x\} $\pm$")


def test_integers_get_thousands_separators():
    table = Table("t", "m", ["params"], [Row("a", [Cell(value=1234567)])])
    assert "1,234,567" in to_markdown(table)
    assert "1234567" in to_csv(table)


def test_an_undefined_metric_says_undefined_not_unavailable():
    reason = "undefined: a constant map ranks no pixel"
    table = Table(title="t", row_header="map", columns=["ρ"], rows=[Row("constant", [Cell(unavailable=reason)])])
    markdown = to_markdown(table)
    assert "| undefined |" in markdown and f"- {reason}" in markdown and "unavailable" not in markdown
    assert r"\textit{undefined}" in to_latex(table)
    assert reason in to_csv(table) and "unavailable" not in to_csv(table)
