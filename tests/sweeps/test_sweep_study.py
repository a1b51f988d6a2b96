"""Real sweeps on the tiny checkpoint: grid coverage, resume, Pareto front, W&B runs, invalid combos."""

import itertools
import json

import optuna
import pytest
from optuna.trial import TrialState
from sweep_helpers import sweep_file, wandb_run_names

from satdiffmoe.cli import main

# Heartbeats and trial retry are Optuna "experimental" features; the sweep uses them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

GRID = {"sampler.fusion_every": [1, "off"], "data.num_lr": [1, 2]}  # the default of write_sweep: 4 points


def load(sweep_dir, name="tiny"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{sweep_dir / 'study.db'}")


def param_sets(trials):
    return sorted(tuple(sorted((k, str(v)) for k, v in t.params.items())) for t in trials)


def full_grid():
    return sorted(tuple(sorted(zip(GRID, map(str, combo), strict=True))) for combo in itertools.product(*GRID.values()))


@pytest.fixture(scope="module")
def pareto_sweep(tiny_model, tmp_path_factory):
    """A finished two-objective grid sweep (quality vs. time) and its folder, shared by the tests below."""
    folder = tmp_path_factory.mktemp("pareto")
    sweep = sweep_file(folder, tiny_model, objectives=[{"metric": "psnr", "direction": "maximize"},
                                                       {"metric": "seconds_per_image", "direction": "minimize"}])
    out = folder / "out"
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    return sweep, out


def test_grid_study_enumerates_its_grid_exactly_once(pareto_sweep):
    _, out = pareto_sweep
    complete = load(out).get_trials(states=(TrialState.COMPLETE,))
    assert param_sets(complete) == full_grid()
    assert all(t.user_attrs["eval"]["metrics"]["psnr"]["mean"] == t.values[0] for t in complete)
    assert {t.user_attrs["eval"]["num_lr"] for t in complete} == {1, 2}
    # per-scene values for the reports' paired Δ: one column per headline per-image metric, aligned by row
    for t in complete:
        scenes, summary = t.user_attrs["scenes"], t.user_attrs["eval"]
        assert len(scenes["key"]) == summary["num_scenes"] * len(summary["seeds"]) == len(scenes["psnr"])
        assert sum(scenes["psnr"]) / len(scenes["psnr"]) == pytest.approx(summary["metrics"]["psnr"]["mean"])
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 1 + 4


def test_multi_objective_sweep_writes_its_pareto_front(pareto_sweep):
    _, out = pareto_sweep
    best = json.loads((out / "best.json").read_text())
    front = {t.number for t in load(out).best_trials}
    assert best["pareto_front"] is True
    assert [o["metric"] for o in best["objectives"]] == ["psnr", "seconds_per_image"]
    assert {t["number"] for t in best["best"]} == front and front
    for a in best["best"]:  # nobody on the front is dominated by another trial on it
        assert not any(b["values"][0] >= a["values"][0] and b["values"][1] <= a["values"][1] and b != a
                       and b["values"] != a["values"] for b in best["best"])
    assert (out / "plots" / "pareto_front.png").stat().st_size > 0
    assert (out / "plots" / "importance_psnr.png").stat().st_size > 0  # 4 trials, both params varied


def test_wandb_offline_folder_has_one_run_per_trial_plus_a_summary(pareto_sweep):
    _, out = pareto_sweep
    names = wandb_run_names(out)
    assert sorted(names) == sorted([f"trial-{n}" for n in range(4)] + ["summary"])


def test_resume_runs_only_the_missing_grid_points_and_a_finished_study_nothing(write_sweep, tmp_path):
    sweep, out = write_sweep(params={"data.num_lr": {"choices": [1, 2]}}), tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out), "--n-trials", "1"]) == 0
    first = load(out).trials
    assert [t.state for t in first] == [TrialState.COMPLETE]

    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    trials = load(out).trials
    assert sorted(t.params["data.num_lr"] for t in trials) == [1, 2]  # the missing point only, none repeated
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].values == first[0].values and trials[0].datetime_complete == first[0].datetime_complete

    assert main(["sweep", str(sweep), "--out", str(out)]) == 0  # a finished study: nothing left to run
    assert len(load(out).trials) == 2


def test_an_impossible_combination_is_pruned_with_its_reason_and_the_study_goes_on(write_sweep, tmp_path):
    # nfe=1000 exceeds diffusion.num_train_timesteps=100 of the tiny experiment: a UserError in with_overrides.
    sweep = write_sweep(params={"sampler.nfe": {"choices": [2, 1000]}})
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    by_nfe = {t.params["sampler.nfe"]: t for t in load(out).trials}
    assert by_nfe[2].state == TrialState.COMPLETE
    assert by_nfe[1000].state == TrialState.PRUNED
    assert "exceeds diffusion.num_train_timesteps" in by_nfe[1000].user_attrs["pruned_reason"]


def test_a_training_sweep_trains_each_trial_reports_val_psnr_to_the_pruner_and_evaluates(write_sweep, tmp_path,
                                                                                      tiny_model):
    sweep = write_sweep(
        params={"train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}},
        kind="train", sampler={"name": "random"}, n_trials=2, pruner={"name": "median", "n_startup_trials": 1},
        base_overrides=[f"data.root={tiny_model['data']}", "stage=satdiffmoe", f"init.vae_ckpt={tiny_model['vae']}",
                        "train.max_steps=2", "train.val_every=1", "data.epoch_length=4"])
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    trials = load(out).trials
    assert len(trials) == 2 and trials[0].state == TrialState.COMPLETE  # the first is never pruned
    for trial in trials:
        assert trial.intermediate_values, "the Lightning pruning callback reported nothing"
        # each trial's training run is its own W&B run, in its own run folder
        assert len(list((out / "trials" / f"tiny-trial-{trial.number}" / "run" / "wandb").glob("offline-run-*"))) == 1
    for trial in (t for t in trials if t.state == TrialState.COMPLETE):
        assert (out / "trials" / f"tiny-trial-{trial.number}" / "run" / "checkpoints" / "last.ckpt").is_file()
        assert trial.user_attrs["eval"]["metrics"]["psnr"]["mean"] == trial.values[0]


def test_a_grid_point_with_more_lrs_than_the_scenes_hold_is_pruned_in_one_line(write_sweep, tmp_path, capsys):
    sweep = write_sweep(params={"data.num_lr": {"choices": [2, 9]}})  # the tiny scenes hold at most 4 LRs
    out = tmp_path / "out"
    assert main(["sweep", str(sweep), "--out", str(out)]) == 0
    by_num_lr = {t.params["data.num_lr"]: t for t in load(out).trials}
    assert by_num_lr[2].state == TrialState.COMPLETE and by_num_lr[9].state == TrialState.PRUNED
    assert by_num_lr[9].user_attrs["pruned_reason"].startswith("data.num_lr=9 but the test scenes have at most")
    assert "Traceback" not in capsys.readouterr().err


def test_failed_trials_keep_their_reason_and_the_command_prints_it(write_sweep, tiny_model, tmp_path, capsys):
    # LPIPS needs 31 px: on the 16 px scenes every trial's objective is unavailable, so every trial fails
    sweep = write_sweep(params={"data.num_lr": {"choices": [1, 2]}}, objectives=[{"metric": "lpips", "direction": "minimize"}],
                        base_overrides=[f"data.root={tiny_model['data']}", "eval.metrics=[psnr,lpips]"])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(out)]) == 2
    trials = load(out).trials
    assert trials and all(t.state == TrialState.FAIL for t in trials)
    assert all("31 px" in t.user_attrs["fail_reason"] for t in trials)  # a5578c5: Optuna stored no reason
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: every trial of study 'tiny' failed; first reason: objective metric")
    assert "31 px" in line
