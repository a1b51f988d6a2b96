"""Paired Δ vs a reference row: the bootstrap on known answers, pairing by (scene, seed), and the Δ
columns of the ablation and method tables in Markdown, LaTeX and CSV."""

from __future__ import annotations

import csv
import io
import json

import optuna
import pytest
from report_fixtures import add_scene_trials, psnr_of, write_eval_rows

from satdiffmoe.errors import UserError
from satdiffmoe.reports.ablation import ablation_tables, default_levels, find_factors, grid_table, one_factor_table
from satdiffmoe.reports.methods import methods_table
from satdiffmoe.reports.paired import paired_delta, pairs_of
from satdiffmoe.reports.sources import read_ablation_sources, read_eval_summaries
from satdiffmoe.reports.tables import to_csv, to_latex, to_markdown


def pairs(values, seed=0):
    return {(f"s{i}", seed): float(v) for i, v in enumerate(values)}


def test_a_constant_difference_has_a_zero_width_interval_at_that_value():
    delta = paired_delta(pairs([3.0, 7.0, 1.0, 9.0]), pairs([2.5, 6.5, 0.5, 8.5]))
    assert (delta.mean, delta.low, delta.high) == (0.5, 0.5, 0.5)
    assert delta.significant and delta.scenes == 4 and delta.seeds == 1


def test_the_interval_is_the_exact_bootstrap_percentile_interval():
    # d = 1, 2, 3, 4: the 4^4 equally likely resamples' means have 2.5% / 97.5% quantiles 1.5 and 3.5
    # (enumerated by hand with numpy); 10,000 seeded resamples land on the same grid points, every time
    first = paired_delta(pairs([1, 2, 3, 4]), pairs([0, 0, 0, 0]))
    assert (first.mean, first.low, first.high) == (2.5, 1.5, 3.5)
    assert paired_delta(pairs([1, 2, 3, 4]), pairs([0, 0, 0, 0])) == first


def test_the_sign_of_the_scenes_decides_the_marking():
    assert paired_delta(pairs([0.1, 0.3, 0.2, 0.4, 0.1, 0.2]), pairs([0] * 6)).significant  # all positive
    mixed = paired_delta(pairs([1, -1, 1, -1, 1, -1, 0.5, -0.5]), pairs([0] * 8))
    assert mixed.low < 0 < mixed.high and not mixed.significant
    assert paired_delta(pairs([-0.2, -0.1, -0.3, -0.2]), pairs([0] * 4)).high < 0


def test_pairs_are_matched_by_scene_and_seed_not_by_order():
    rows = [{"key": "b", "seed": 0, "psnr": 12.0}, {"key": "a", "seed": 0, "psnr": 11.0},
            {"key": "a", "seed": 1, "psnr": 13.0}, {"key": "c", "seed": 0, "psnr": None}]
    reference = [{"key": "a", "seed": 1, "psnr": 10.0}, {"key": "a", "seed": 0, "psnr": 10.0},
                 {"key": "c", "seed": 0, "psnr": 10.0}, {"key": "d", "seed": 0, "psnr": 99.0}]
    delta = paired_delta(pairs_of(rows, "psnr"), pairs_of(reference, "psnr"))
    # only scene a is in both with values: seeds 0 and 1 differ by 1 and 3, averaged per scene -> 2
    assert (delta.mean, delta.scenes, delta.seeds) == (2.0, 1, 2)
    assert paired_delta(pairs_of(rows[:1], "psnr"), pairs_of(reference, "psnr")) is None  # nothing in common


@pytest.fixture(scope="module")
def scene_study(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("scene_sweep")
    study = optuna.create_study(study_name="paired", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize")
    add_scene_trials(study)
    (source,) = read_ablation_sources(str(sweep))
    factors = find_factors(source.observations)
    return source, factors, default_levels(source.observations, factors)


def test_ablation_delta_is_exact_where_scenes_differ_more_than_configs(scene_study):
    source, factors, defaults = scene_study
    table = one_factor_table(source, "sampler.fusion_every", factors, defaults)
    delta = table.columns.index("Δ PSNR (dB)")
    assert table.columns[delta + 1] == "Δ LPIPS" and "Δ FID" not in table.columns  # per-image metrics only
    # reference: fusion every 5 (the paper's); every scene moves by the same fusion bonus, so the Δ is
    # exact and significant although the rows' own CIs over scenes overlap
    assert table.cell(1, delta).text == "reference"
    one = table.cell(0, delta)
    assert one.value == pytest.approx(psnr_of(1, 50, 0) - psnr_of(5, 50, 0))
    assert one.interval == pytest.approx((-1.0, -1.0)) and one.marked and one.n == 8
    assert table.cell(2, delta).value == pytest.approx(-3.0)
    markdown, latex, text = to_markdown(table), to_latex(table), to_csv(table)
    assert "| Δ PSNR (dB) |" in markdown and "-1.000 [-1.000, -1.000]*" in markdown
    assert "$\\Delta$ PSNR (dB)" in latex and "-1.000 [-1.000, -1.000]*" in latex
    assert "reference: fusion every (steps) = 5 (the paper's setting)" in markdown
    assert "each CI rests on 8 scenes × 1 seed" in markdown and "* = the CI excludes 0" in markdown
    header, first = list(csv.reader(io.StringIO(text)))[:2]
    column = dict(zip(header, first))
    assert float(column["Δ PSNR (dB)"]) == pytest.approx(-1.0)
    assert column["Δ PSNR (dB) significant"] == "*" and float(column["Δ PSNR (dB) ci_low"]) == pytest.approx(-1.0)


def test_ablation_reference_can_be_chosen_and_falls_back_when_absent(scene_study):
    source, factors, defaults = scene_study
    chosen = one_factor_table(source, "sampler.fusion_every", factors, defaults, {"sampler.fusion_every": "off"})
    delta = chosen.columns.index("Δ PSNR (dB)")
    assert chosen.cell(2, delta).text == "reference" and chosen.cell(1, delta).value == pytest.approx(3.0)
    absent = one_factor_table(source, "sampler.nfe", factors, defaults, {"sampler.nfe": "40"})
    delta = absent.columns.index("Δ PSNR (dB)")
    assert absent.cell(1, delta).text == "reference"  # 40 was not run: the nearest level is 50
    assert any("the report's 40 is not in this study: the nearest level" in n for n in absent.notes)


def test_grid_gets_a_delta_column_after_every_level(scene_study):
    source, factors, defaults = scene_study
    grid = grid_table(source, "sampler.fusion_every", "sampler.nfe", "psnr", factors, defaults)
    assert grid.columns == ["10", "Δ 10", "50", "Δ 50"]
    assert grid.cell(1, 3).text == "reference"  # fusion 5, NFE 50
    assert grid.cell(0, 1).value == pytest.approx(psnr_of(1, 10, 0) - psnr_of(5, 50, 0))
    stems = [stem for stem, _ in ablation_tables(source)]
    assert "ablation_paired_sampler_fusion_every_x_sampler_nfe_psnr" in stems


def test_ablation_without_per_scene_values_says_why_there_is_no_delta(grid_study):
    (source,) = read_ablation_sources(str(grid_study))
    factors = find_factors(source.observations)
    table = one_factor_table(source, "sampler.nfe", factors, default_levels(source.observations, factors))
    assert not any(c.startswith("Δ") for c in table.columns) and any(n.startswith("no Δ column") for n in table.notes)


def _method_evals(write_eval, tmp_path):
    folder = tmp_path / "evals"
    for name, method, num_lr, psnr, keys in (
            ("ours_n8", "satdiffmoe", 8, 25.0, None), ("ours_n1", "satdiffmoe", 1, 23.0, None),
            ("cn", "controlnet", 8, 24.5, ["s7", "s6", "s5", "s4", "s3", "s2", "s1"])):  # reversed, s0 missing
        write_eval("evals", name, method, psnr, num_lr=num_lr)
        if keys:
            centre = 17.5
            rows = [{"key": k, "seed": 0, "psnr": psnr + 5.0 * int(k[1:]) - centre} for k in keys]
            (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            write_eval_rows(folder, name, psnr)
    write_eval("evals", "bicubic", "bicubic_nearest", 20.0)  # no .jsonl
    return read_eval_summaries([str(folder)])


def test_method_tables_pair_with_satdiffmoe_n8_by_scene_key(write_eval, tmp_path):
    summaries = _method_evals(write_eval, tmp_path)
    table = methods_table(summaries)
    labels = [r.label for r in table.rows]
    delta = table.columns.index("Δ PSNR (dB)")
    assert table.cell(labels.index("SatDiffMoE (N = 8)"), delta).text == "reference"
    n1 = table.cell(labels.index("SatDiffMoE (N = 1)"), delta)
    assert n1.value == pytest.approx(-2.0) and n1.interval == pytest.approx((-2.0, -2.0)) and n1.marked
    cn = table.cell(labels.index("ControlNet (N = 8)"), delta)
    assert cn.value == pytest.approx(-0.5) and cn.n == 7  # the seven scenes both evaluated
    assert table.cell(labels.index("Bicubic (nearest LR)"), delta).unavailable.startswith("no per-scene rows")
    notes = "\n".join(table.all_notes())
    assert "reference: SatDiffMoE (N = 8), eval ours_n8" in notes and "7–8 scenes × 1 seed" in notes
    perceptual = methods_table(summaries, "perceptual")
    assert "Δ LPIPS" in perceptual.columns and "Δ KID" not in perceptual.columns


def test_method_reference_can_be_named_and_must_exist(write_eval, tmp_path):
    summaries = _method_evals(write_eval, tmp_path)
    table = methods_table(summaries, reference="ours_n1")
    delta = table.columns.index("Δ PSNR (dB)")
    assert table.cell([r.label for r in table.rows].index("SatDiffMoE (N = 8)"), delta).value == pytest.approx(2.0)
    with pytest.raises(UserError, match="--methods-reference nope: no such evaluation"):
        methods_table(summaries, reference="nope")
