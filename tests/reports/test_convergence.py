"""Steps/time to thresholds and speed-ups on synthetic logs with known crossing points (see conftest)."""

from __future__ import annotations

import json

import pytest
from report_fixtures import write_run

from satdiffmoe.errors import UserError
from satdiffmoe.reports.convergence import (
    convergence_tables,
    default_thresholds,
    first_crossing,
    parse_thresholds,
    validation_metrics,
)
from satdiffmoe.reports.sources import read_training_runs


@pytest.fixture
def runs(runs_dir):
    return {r.method: r for r in read_training_runs([str(runs_dir)])}


def test_experiment_folder_expands_to_its_runs_with_methods_from_config(runs_dir):
    found = read_training_runs([str(runs_dir)])
    assert sorted((r.method, r.label) for r in found) == [
        ("controlnet", "cn/run1"), ("diffusionsat", "ds/run1"), ("satdiffmoe", "ours/run1")]
    assert validation_metrics(found) == ["val/psnr", "val/loss"]


def test_first_crossing_is_the_first_logged_step_at_or_above(runs):
    assert first_crossing(runs["satdiffmoe"], "val/psnr", 20.0).step == 200
    assert first_crossing(runs["satdiffmoe"], "val/psnr", 20.0).seconds == 100.0
    assert first_crossing(runs["satdiffmoe"], "val/psnr", 20.5).step == 300  # no interpolation
    assert first_crossing(runs["controlnet"], "val/psnr", 20.0).step == 1000
    assert first_crossing(runs["diffusionsat"], "val/psnr", 20.0).step is None


def test_lower_is_better_metrics_cross_downwards(runs):
    assert first_crossing(runs["satdiffmoe"], "val/loss", 0.25).step == 400  # loss = 100 / step


def test_default_threshold_is_ninety_percent_of_best_final(runs):
    thresholds = default_thresholds(list(runs.values()), ["val/psnr", "val/loss"])
    assert thresholds["val/psnr"] == pytest.approx(0.9 * 25.0)
    assert thresholds["val/loss"] == pytest.approx(0.1 / 0.9)


def _speedups(runs, thresholds):
    tables = dict(convergence_tables(list(runs.values()), thresholds, derived=False))
    speedup = tables["convergence_speedup"]
    return tables, {row.label: row.cells for row in speedup.rows}, speedup.columns


def test_speedup_ratios_in_steps_and_time(runs):
    _, rows, columns = _speedups(runs, {"val/psnr": 20.0})
    vs_controlnet = rows["val/psnr ≥ 20 vs ControlNet"]
    assert vs_controlnet[columns.index("speed-up (steps, ×)")].value == pytest.approx(1000 / 200)
    # ControlNet steps are twice as fast: (1000 × 0.25 s) / (200 × 0.5 s)
    assert vs_controlnet[columns.index("speed-up (time, ×)")].value == pytest.approx(2.5)


def test_baseline_that_never_reaches_gives_a_lower_bound(runs):
    _, rows, columns = _speedups(runs, {"val/psnr": 20.0})
    vs_diffusionsat = rows["val/psnr ≥ 20 vs DiffusionSat"]
    assert vs_diffusionsat[columns.index("baseline step")].text == "not reached"
    assert vs_diffusionsat[columns.index("speed-up (steps, ×)")].text == "> 5.0"  # 1000 logged / 200


def test_threshold_nobody_reaches_is_not_reached_everywhere(runs):
    tables, rows, columns = _speedups(runs, {"val/psnr": 30.0})
    assert all(cells[columns.index("speed-up (steps, ×)")].text == "not reached" for cells in rows.values())
    per_run = tables["convergence_val_psnr"]
    assert {row.cells[1].text for row in per_run.rows} == {"not reached"}


def test_per_run_table_states_threshold_and_final_values(runs):
    tables = dict(convergence_tables(list(runs.values()), {"val/psnr": 22.5}, derived=True))
    table = tables["convergence_val_psnr"]
    assert "val/psnr ≥ 22.5 (derived: 90% of the best final value)" in table.title
    finals = {row.label: row.cells[3].value for row in table.rows}
    assert finals == {"ours/run1": 25.0, "cn/run1": 20.0, "ds/run1": 10.0}


def test_threshold_arguments_are_parsed_and_checked():
    assert parse_thresholds(["val/psnr=20"], ["val/psnr"]) == {"val/psnr": 20.0}
    with pytest.raises(UserError, match="unknown metric 'val/psnrr'.*val/psnr"):
        parse_thresholds(["val/psnrr=20"], ["val/psnr"])
    with pytest.raises(UserError, match="metric=value"):
        parse_thresholds(["val/psnr"], ["val/psnr"])


def test_truncated_last_log_line_is_tolerated_but_a_broken_middle_line_is_not(runs_dir):
    log = runs_dir / "ours" / "run1" / "metrics.jsonl"
    log.write_text(log.read_text() + '{"step": 10')
    assert len(read_training_runs([str(log.parent)])[0].records) == 30
    log.write_text('{"step": 10\n' + json.dumps({"step": 20, "val/psnr": 1.0}) + "\n")
    with pytest.raises(UserError, match="metrics.jsonl:1 is not valid JSON"):
        read_training_runs([str(log.parent)])


def test_missing_run_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="run folder not found"):
        read_training_runs([str(tmp_path / "nope")])


def test_missing_wall_time_leaves_steps_but_marks_time_unavailable(runs_dir):
    log = runs_dir / "ours" / "run1" / "metrics.jsonl"
    log.write_text("".join(json.dumps({"step": s, "wall_time": None, "val/psnr": s / 10}) + "\n" for s in (100, 200)))
    (run,) = read_training_runs([str(log.parent)])
    crossing = first_crossing(run, "val/psnr", 20.0)
    assert crossing.step == 200 and crossing.seconds is None


def test_several_runs_of_a_method_use_the_median_and_say_how_many_reached(runs_dir):
    write_run(runs_dir / "more", "satdiffmoe", "ours2", psnr_per_step=0.05, cap=25.0, seconds_per_step=0.5)  # step 400
    write_run(runs_dir / "more", "satdiffmoe", "ours3", psnr_per_step=0.001, cap=25.0, seconds_per_step=0.5)  # never
    runs = read_training_runs([str(runs_dir)])
    speedup = dict(convergence_tables(runs, {"val/psnr": 20.0}, derived=False))["convergence_speedup"]
    vs_controlnet = next(row.cells for row in speedup.rows if row.label.endswith("ControlNet"))
    assert vs_controlnet[0].value == 300  # median of 200 and 400; the run that never reached is left out
    assert "val/psnr ≥ 20: 2 of 3 SatDiffMoE runs reach it" in speedup.notes
