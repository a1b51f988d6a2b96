"""The method comparison table built from eval JSONs."""

from __future__ import annotations

import json
import logging

import pytest
from report_fixtures import write_eval_rows

from satdiffmoe.reports.methods import method_tables, methods_table
from satdiffmoe.reports.sources import read_eval_summaries


def _write_all(write_eval, scenes_ours: int = 8):
    write_eval("evals", "zz_ours_all", "satdiffmoe", 27.0, num_lr=-1, trainable=900, seconds_per_image=2.0,
               num_scenes=scenes_ours)
    write_eval("evals", "ours_n1", "satdiffmoe", 24.0, num_lr=1, trainable=900)
    write_eval("evals", "cn", "controlnet", 25.0, num_lr=1, trainable=3000)
    write_eval("evals", "ds", "diffusionsat", 25.5, num_lr=8, trainable=4000)
    write_eval("evals", "bicubic", "bicubic_nearest", 22.0, trainable=0, seconds_per_image=0.001)


def test_rows_are_references_then_baselines_then_ours_by_n(write_eval, tmp_path):
    _write_all(write_eval)
    table = methods_table(read_eval_summaries([str(tmp_path / "evals")]))
    assert [r.label for r in table.rows] == [
        "Bicubic (nearest LR)", "ControlNet (N = 1)", "DiffusionSat (N = 8)", "SatDiffMoE (N = 1)",
        "SatDiffMoE (N = all)"]


def test_metrics_params_and_time_columns_with_best_marked(write_eval, tmp_path):
    _write_all(write_eval)
    summaries = read_eval_summaries([str(tmp_path / "evals")])
    table = methods_table(summaries)
    psnr = table.columns.index("PSNR (dB)")
    trainable, time = table.columns.index("trainable params"), table.columns.index("time (s/image)")
    assert "LPIPS" not in table.columns  # perceptual metrics have their own table
    assert [table.cell(r, psnr).best for r in range(5)] == [False, False, False, False, True]
    assert table.cell(4, psnr).ci95 == 0.4
    assert [table.cell(r, trainable).value for r in range(5)] == [0, 3000, 4000, 900, 900]
    assert table.cell(0, time).value == 0.001


def test_perceptual_table_marks_the_lowest_lpips_and_shows_kid_std(write_eval, tmp_path):
    _write_all(write_eval)
    summaries = read_eval_summaries([str(tmp_path / "evals")])
    table = methods_table(summaries, "perceptual")
    lpips, kid, fid = (table.columns.index(c) for c in ("LPIPS", "KID", "FID"))
    assert [table.cell(r, lpips).best for r in range(5)] == [False, False, False, False, True]  # 10/27 is lowest
    assert table.cell(0, kid).ci95 == 0.002  # KID's ± is its std over subsets (no CI over scenes)
    assert table.cell(0, fid).unavailable == "no weight file: install it"
    assert [name for name, _ in method_tables(summaries)] == ["methods", "methods_perceptual"]


def test_different_scene_counts_warn_in_log_and_table(write_eval, tmp_path, caplog):
    _write_all(write_eval, scenes_ours=16)
    with caplog.at_level(logging.WARNING):
        table = methods_table(read_eval_summaries([str(tmp_path / "evals")]))
    assert "different numbers of test scenes" in caplog.text and "zz_ours_all: 16" in caplog.text
    assert table.notes[0].startswith("WARNING: evaluations use different numbers of test scenes")


def test_same_scene_counts_do_not_warn(write_eval, tmp_path, caplog):
    _write_all(write_eval)
    with caplog.at_level(logging.WARNING):
        table = methods_table(read_eval_summaries([str(tmp_path / "evals")]))
    assert "different numbers" not in caplog.text and not table.notes[0].startswith("WARNING")


def test_eval_named_twice_counts_once_and_broken_neighbours_are_skipped(write_eval, tmp_path, caplog):
    path = write_eval("evals", "cn", "controlnet", 25.0)
    (tmp_path / "evals" / "half_written.json").write_text('{"name": ')
    with caplog.at_level(logging.WARNING):
        summaries = read_eval_summaries([str(path), str(tmp_path / "evals")])
    assert [s.name for s in summaries] == ["cn"]
    assert "skipping" in caplog.text and "half_written.json" in caplog.text


def test_the_autoencoder_reconstruction_is_shown_but_never_marked_best(write_eval, tmp_path):
    _write_all(write_eval)
    write_eval("evals", "autoencoder_reconstruction", "autoencoder", 40.0, num_lr=8, trainable=0)
    table = methods_table(read_eval_summaries([str(tmp_path / "evals")]))
    labels = [r.label for r in table.rows]
    assert labels[1] == "Autoencoder reconstruction of the HR"  # after the references, without "(N = ...)"
    psnr = table.columns.index("PSNR (dB)")
    assert table.cell(1, psnr).value == 40.0 and not table.cell(1, psnr).best
    assert table.cell(labels.index("SatDiffMoE (N = all)"), psnr).best
    assert any("never marked best" in note for note in table.notes)


def test_rows_with_no_value_in_a_group_table_are_left_out_and_named(write_eval, tmp_path):
    _write_all(write_eval)
    path = write_eval("evals", "zz_ours_all", "satdiffmoe", 27.0, num_lr=-1, trainable=900)
    summary = json.loads(path.read_text())
    summary["metrics"]["ause"] = {"mean": 0.3, "std": 0.1, "ci95": 0.05, "n": 8}
    path.write_text(json.dumps(summary))
    table = methods_table(read_eval_summaries([str(tmp_path / "evals")]), "calibration")
    assert [r.label for r in table.rows] == ["SatDiffMoE (N = all)"]
    assert any(note.startswith("not shown, no value in this table: Bicubic (nearest LR)") for note in table.notes)
    assert len(methods_table(read_eval_summaries([str(tmp_path / "evals")])).rows) == 5  # fidelity: every row


def test_free_uncertainty_maps_are_rows_of_the_calibration_table_only(write_eval, tmp_path):
    _write_all(write_eval)
    ours = write_eval("evals", "zz_ours_all", "satdiffmoe", 27.0, num_lr=-1, trainable=900)
    summary = json.loads(ours.read_text())
    summary["metrics"]["unc_spearman"] = {"mean": 0.1, "std": 0.1, "ci95": 0.05, "n": 8}
    ours.write_text(json.dumps(summary))
    for method, rho in (("unc_constant", None), ("unc_lr_std", 0.4)):
        free = {key: summary[key] for key in ("num_scenes", "seeds", "num_lr", "ckpt")}
        free.update(name=f"zz_ours_all_{method}", method=method, nfe=0, uncertainty_of="zz_ours_all",
                    metrics={"unc_spearman": {"unavailable": "undefined: a constant map ranks no pixel"} if rho is None
                             else {"mean": rho, "std": 0.1, "ci95": 0.05, "n": 8},
                             "ause": {"mean": 0.5 if rho is None else 0.3, "std": 0.1, "ci95": 0.05, "n": 8}})
        (tmp_path / "evals" / f"zz_ours_all_{method}.json").write_text(json.dumps(free))
    summaries = read_eval_summaries([str(tmp_path / "evals")])
    calibration = methods_table(summaries, "calibration")
    assert [r.label for r in calibration.rows] == [
        "SatDiffMoE (N = all)", "Constant uncertainty map (N = all)", "Std of the bicubic LRs (N = all)"]
    assert calibration.cell(1, 1).unavailable.startswith("undefined") and calibration.cell(2, 1).best
    assert calibration.cell(1, 1).missing_label == "undefined"  # shown as what it is, not as a failure
    assert any(note.startswith("free maps") for note in calibration.notes)
    assert len(methods_table(summaries).rows) == 5  # never in the fidelity table


def test_evaluations_of_several_runs_name_their_run_and_checkpoint(write_eval, tmp_path):
    """Two runs' eval/ folders both hold satdiffmoe_n8: the rows say which run and checkpoint each is, and the
    Δ columns still pair them by scene."""
    for run, psnr in (("a", 25.0), ("b", 24.0)):
        path = write_eval(f"runs/tiny/{run}/eval", "satdiffmoe_n8", "satdiffmoe", psnr, num_lr=8)
        write_eval_rows(path.parent, "satdiffmoe_n8", psnr)
    write_eval("runs/tiny/a/eval", "bicubic_nearest_n8", "bicubic_nearest", 22.0)
    summaries = read_eval_summaries([str(tmp_path / "runs/tiny/a/eval"), str(tmp_path / "runs/tiny/b/eval")])
    table = methods_table(summaries)
    run, ckpt, delta = (table.columns.index(c) for c in ("run", "checkpoint", "Δ PSNR (dB)"))
    assert [table.rows[r].cells[run] for r in range(3)] == ["tiny/a", "tiny/a", "tiny/b"]
    assert [table.rows[r].cells[ckpt] for r in range(3)] == ["x.ckpt"] * 3
    assert table.cell(1, delta).text == "reference" and table.cell(2, delta).value == pytest.approx(-1.0)
    one_run = methods_table(read_eval_summaries([str(tmp_path / "runs/tiny/a/eval")]))
    assert "run" not in one_run.columns and "checkpoint" not in one_run.columns
