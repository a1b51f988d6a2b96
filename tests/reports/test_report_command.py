"""`satdiffmoe report` end to end through the real CLI: every artefact written, indexed and non-empty."""

from __future__ import annotations

import io
import re
from contextlib import redirect_stdout
from pathlib import Path

import optuna
import pytest
from report_fixtures import add_failed_study, add_grid_trials, write_convergence_runs, write_eval_summary

from satdiffmoe.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """One full report (runs + sweep + evals) shared by the read-only tests below: it is the slow part."""
    root = tmp_path_factory.mktemp("report")
    write_convergence_runs(root / "runs")
    (root / "sweep").mkdir()
    add_grid_trials(optuna.create_study(study_name="fusion", storage=f"sqlite:///{root / 'sweep' / 'study.db'}"))
    for name, method, psnr, num_lr in (("ours", "satdiffmoe", 27.0, 4), ("cn", "controlnet", 25.0, 1)):
        write_eval_summary(root / "evals", name, method, psnr, num_lr=num_lr)
    out = root / "report"
    with redirect_stdout(io.StringIO()) as printed:
        code = main(["report", "--runs", str(root / "runs"), "--study", str(root / "sweep"),
                     "--evals", str(root / "evals"), "--thresholds", "val/psnr=20", "--out", str(out)])
    assert code == 0
    return out, printed.getvalue()


def test_prints_the_index_path(report):
    out, printed = report
    assert printed.strip() == str(out / "report.md")


def test_index_links_every_table_and_figure_and_each_exists(report):
    out, _ = report
    index = (out / "report.md").read_text()
    linked = set(re.findall(r"\]\(([^)]+)\)", index))
    written = {p.name for p in out.iterdir()} - {"report.md"}
    assert linked == written
    for stem in ("convergence_val_psnr", "convergence_speedup", "ablation_fusion_sampler_nfe", "methods"):
        assert {f"{stem}.md", f"{stem}.tex", f"{stem}.csv"} <= written


def test_figures_are_non_empty_pngs(report):
    out, _ = report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["ablation_fusion_sampler_fusion_every.png", "ablation_fusion_sampler_nfe.png",
                    "convergence_val_loss.png", "convergence_val_psnr.png", "pareto_fusion_kid.png",
                    "pareto_fusion_lpips.png", "pareto_fusion_psnr.png"]
    for name in pngs:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


def test_index_shows_the_speedup_and_the_regeneration_command(report):
    out, _ = report
    index = (out / "report.md").read_text()
    assert "| val/psnr ≥ 20 vs ControlNet | 200 | 1,000 | 5.00 | 100.0 | 250.0 | 2.50 |" in index
    assert "satdiffmoe report --runs" in index and "--thresholds val/psnr=20" in index


def _fails(argv, capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    return err


def test_no_inputs_is_a_one_line_error(tmp_path, capsys):
    assert "nothing to report" in _fails(["report", "--out", str(tmp_path / "o")], capsys)


def test_missing_study_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    err = _fails(["report", "--study", str(tmp_path / "absent"), "--out", str(tmp_path / "o")], capsys)
    assert "study not found" in err
    assert not (tmp_path / "o").exists()


def test_study_without_complete_trials_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "sweep").mkdir()
    add_failed_study(f"sqlite:///{tmp_path / 'sweep' / 'study.db'}", "broken")
    err = _fails(["report", "--study", str(tmp_path / "sweep"), "--out", str(tmp_path / "o")], capsys)
    assert "no COMPLETE trials" in err


def test_unknown_threshold_metric_is_a_one_line_error(runs_dir, tmp_path, capsys):
    err = _fails(["report", "--runs", str(runs_dir), "--thresholds", "val/lpips=0.2", "--out", str(tmp_path / "o")],
                 capsys)
    assert "unknown metric 'val/lpips'" in err


def test_json_that_is_not_an_eval_summary_is_a_one_line_error(tmp_path, capsys):
    bad = Path(tmp_path / "x.json")
    bad.write_text('{"name": "x"}')
    assert "not an evaluation summary" in _fails(["report", "--evals", str(bad), "--out", str(tmp_path / "o")], capsys)


def test_reference_options_reach_the_delta_columns_and_the_regenerate_line(tmp_path):
    from report_fixtures import add_scene_trials, write_eval_rows

    (tmp_path / "sweep").mkdir()
    add_scene_trials(optuna.create_study(study_name="fusion", storage=f"sqlite:///{tmp_path / 'sweep' / 'study.db'}"))
    for name, method, psnr in (("ours", "satdiffmoe", 27.0), ("cn", "controlnet", 25.0)):
        write_eval_summary(tmp_path / "evals", name, method, psnr, num_lr=8)
        write_eval_rows(tmp_path / "evals", name, psnr)
    out = tmp_path / "report"
    with redirect_stdout(io.StringIO()):
        assert main(["report", "--study", str(tmp_path / "sweep"), "--evals", str(tmp_path / "evals"),
                     "--ablation-reference", "sampler.fusion_every=1", "--methods-reference", "cn",
                     "--out", str(out)]) == 0
    ablation = (out / "ablation_fusion_sampler_fusion_every.md").read_text()
    assert "reference: fusion every (steps) = 1 (the report's setting)" in ablation
    assert "| 5 |" in ablation and "+1.000 [+1.000, +1.000]*" in ablation  # fusion 5 vs 1: +1 dB on every scene
    methods = (out / "methods.csv").read_text()
    assert "Δ PSNR (dB) ci_low" in methods and "+2.000" in (out / "methods.md").read_text()
    assert "--ablation-reference sampler.fusion_every=1 --methods-reference cn" in (out / "report.md").read_text()
    assert main(["report", "--evals", str(tmp_path / "evals"), "--ablation-reference", "oops", "--out", str(out)]) == 2
