"""Ablation tables from real Optuna studies (SQLite and journal storages) and from eval-JSON folders."""

from __future__ import annotations

import math
import shutil

import optuna
import pytest
from optuna.storages.journal import JournalFileBackend, JournalStorage
from report_fixtures import add_failed_study, add_grid_trials, psnr_of

from satdiffmoe.errors import UserError
from satdiffmoe.reports.ablation import (
    Configuration,
    ablation_tables,
    default_levels,
    find_factors,
    grid_table,
    one_factor_table,
    pareto_front,
)
from satdiffmoe.reports.sources import read_ablation_sources, read_studies
from satdiffmoe.reports.tables import to_csv, to_markdown

T_975_DF1 = 12.706204736174704  # Student t quantile for 2 seeds


def _fusion_table(sweep):
    (source,) = read_ablation_sources(str(sweep))
    factors = find_factors(source.observations)
    return source, factors, default_levels(source.observations, factors)


def test_swept_keys_become_factors_and_seed_is_a_replicate(grid_study):
    source, factors, defaults = _fusion_table(grid_study)
    assert source.name == "fusion" and len(source.observations) == 12
    assert factors == ["sampler.fusion_every", "sampler.nfe"]
    assert defaults == {"sampler.fusion_every": 5, "sampler.nfe": 50}  # the schema defaults, both evaluated


def test_one_factor_table_cells_are_seed_means_with_t_interval(grid_study):
    source, factors, defaults = _fusion_table(grid_study)
    table = one_factor_table(source, "sampler.fusion_every", factors, defaults)
    assert [r.label for r in table.rows] == ["1", "5", "off"]
    psnr = table.columns.index("PSNR (dB)")
    for row, fusion_every in zip(range(3), (1, 5, "off")):
        cell = table.cell(row, psnr)
        assert cell.value == pytest.approx((psnr_of(fusion_every, 50, 0) + psnr_of(fusion_every, 50, 1)) / 2)
        assert cell.n == 2
        # two seeds 0.5 dB apart: sd = 0.5/sqrt(2), half-width = t * sd / sqrt(2) = t * 0.25
        assert cell.ci95 == pytest.approx(T_975_DF1 * 0.25)
    assert [table.cell(r, psnr).best for r in range(3)] == [False, True, False]
    assert "nfe" in table.notes[0].lower() and "50" in table.notes[0]


def test_time_column_marks_the_fastest_as_best(grid_study):
    source, factors, defaults = _fusion_table(grid_study)
    table = one_factor_table(source, "sampler.nfe", factors, defaults)
    time = table.columns.index("time (s/image)")
    assert [table.cell(r, time).value for r in range(2)] == pytest.approx([0.1, 0.5])
    assert [table.cell(r, time).best for r in range(2)] == [True, False]


def test_grid_has_every_cell_and_bolds_the_single_best(grid_study):
    source, factors, defaults = _fusion_table(grid_study)
    grid = grid_table(source, "sampler.fusion_every", "sampler.nfe", "psnr", factors, defaults)
    assert grid.columns == ["10", "50"]
    values = [grid.cell(r, c).value for r in range(3) for c in range(2)]
    assert values == pytest.approx([23.25, 27.25, 24.25, 28.25, 21.25, 25.25])  # rows 1, 5, off × nfe 10, 50
    best = [(r, c) for r in range(3) for c in range(2) if grid.cell(r, c).best]
    assert best == [(1, 1)]
    assert "**28.25 ± 3.18**" in to_markdown(grid)


def test_unavailable_metric_propagates_as_text_in_every_format(grid_study):
    source, factors, defaults = _fusion_table(grid_study)
    table = one_factor_table(source, "sampler.nfe", factors, defaults)
    fid = table.columns.index("FID")
    assert table.cell(0, fid).unavailable == "no weight file: install it"
    assert not table.cell(0, fid).best
    markdown = to_markdown(table)
    assert "| unavailable |" in markdown and "unavailable: no weight file: install it" in markdown
    assert "unavailable: no weight file: install it" in to_csv(table)


def test_every_one_factor_table_and_grid_is_listed(grid_study):
    (source,) = read_ablation_sources(str(grid_study))
    stems = [stem for stem, _ in ablation_tables(source)]
    assert stems[:2] == ["ablation_fusion_sampler_fusion_every", "ablation_fusion_sampler_nfe"]
    # FID is unavailable everywhere: no grid for it; PSNR and time grids exist
    assert "ablation_fusion_sampler_fusion_every_x_sampler_nfe_psnr" in stems
    assert "ablation_fusion_sampler_fusion_every_x_sampler_nfe_seconds_per_image" in stems
    assert not any(s.endswith("_fid") for s in stems)


def test_name_at_storage_picks_one_of_several_studies(grid_study, tmp_path):
    shutil.copy(grid_study / "study.db", tmp_path / "study.db")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    other = optuna.create_study(study_name="nfe_only", storage=url)
    add_grid_trials(other, seeds=(0,))
    assert [s.name for s in read_studies(url)] == ["fusion", "nfe_only"]
    (picked,) = read_studies(f"nfe_only@{url}")
    assert picked.name == "nfe_only" and len(picked.observations) == 6
    with pytest.raises(UserError, match="no study named 'nope'.*fusion, nfe_only"):
        read_studies(f"nope@{url}")


def test_journal_storage_is_read(tmp_path):
    path = tmp_path / "sweep.log"
    study = optuna.create_study(study_name="journaled", storage=JournalStorage(JournalFileBackend(str(path))))
    add_grid_trials(study, seeds=(0,))
    (source,) = read_ablation_sources(f"journal:{path}")
    assert source.name == "journaled" and len(source.observations) == 6


def test_study_without_complete_trials_is_a_user_error(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    add_failed_study(url, "broken")
    with pytest.raises(UserError, match="'broken'.*no COMPLETE trials"):
        read_studies(url)


def test_missing_sqlite_file_is_a_user_error_and_is_not_created(tmp_path):
    with pytest.raises(UserError, match="not found"):
        read_studies(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_folder_of_eval_jsons_is_an_ablation_source(write_eval, tmp_path):
    for num_lr in (1, 2, 4):
        write_eval("evals", f"n{num_lr}", "satdiffmoe", 20.0 + num_lr, num_lr=num_lr)
    write_eval("evals", "n4_off", "satdiffmoe", 21.0, num_lr=4, fusion_every="off")
    (source,) = read_ablation_sources(str(tmp_path / "evals"))
    factors = find_factors(source.observations)
    assert factors == ["sampler.fusion_every", "data.num_lr"]
    table = one_factor_table(source, "data.num_lr", factors, default_levels(source.observations, factors))
    assert [r.label for r in table.rows] == ["1", "2", "4"]
    assert [table.cell(r, 0).value for r in range(3)] == [21.0, 22.0, 24.0]
    assert table.cell(2, 0).ci95 == 0.4 and table.cell(2, 0).n == 1  # single seed: the eval's own CI


def test_pareto_front_keeps_only_undominated_configurations():
    points = [Configuration("a", 1.0, 20.0, None), Configuration("b", 2.0, 19.0, None),
              Configuration("c", 3.0, 25.0, None), Configuration("d", 0.5, 18.0, None)]
    assert pareto_front(points, higher_is_better_quality=True) == [3, 0, 2]
    assert pareto_front(points, higher_is_better_quality=False) == [3]


def test_t_interval_constant_matches_scipy():
    from scipy import stats

    assert math.isclose(stats.t.ppf(0.975, 1), T_975_DF1)


def _sparse_source(write_eval, tmp_path):
    # (fusion 5, NFE 50) — both defaults — was never evaluated
    for fusion_every, nfe, psnr in ((1, 10, 21.0), (5, 10, 22.0), (1, 50, 25.0)):
        write_eval("sparse", f"f{fusion_every}_n{nfe}", "satdiffmoe", psnr, fusion_every=fusion_every, nfe=nfe)
    (source,) = read_ablation_sources(str(tmp_path / "sparse"))
    factors = find_factors(source.observations)
    return source, factors, default_levels(source.observations, factors)


def test_combination_never_evaluated_is_marked_not_a_number(write_eval, tmp_path):
    source, factors, defaults = _sparse_source(write_eval, tmp_path)
    grid = grid_table(source, "sampler.fusion_every", "sampler.nfe", "psnr", factors, defaults)
    assert grid.cell(1, 1).text == "—" and not grid.cell(1, 1).best
    assert grid.cell(0, 1).best and "— = combination not evaluated" in grid.notes


def test_one_factor_table_falls_back_to_averaging_when_defaults_were_not_run(write_eval, tmp_path):
    source, factors, defaults = _sparse_source(write_eval, tmp_path)
    table = one_factor_table(source, "sampler.fusion_every", factors, defaults)
    assert [table.cell(r, 0).value for r in range(2)] == [23.0, 22.0]  # fusion 1: mean of 21 and 25
    assert table.notes[0].startswith("too few trials at the other factors' defaults")
