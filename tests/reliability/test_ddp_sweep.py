"""A training sweep on two CPU processes (gloo): `satdiffmoe sweep` relaunches itself under torchrun,
rank 0 takes the trials from Optuna and rank 1 trains exactly the same ones.

Each trial's `ranks` user attribute holds what every rank reported after its fit: the parameters,
a hash of the resolved config, and a checksum of the trained weights, which would differ if rank 1
had trained with another learning rate (DDP averages gradients, each rank applies its own lr).
"""

from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from reliability_helpers import TINY_EXPERIMENT, run_cli


def ddp_sweep(folder, tiny_runs, max_steps=2, **fields):
    """A training sweep file on the tiny model whose every trial trains on 2 CPU processes."""
    spec = {
        "study": "ddp_lr",
        "kind": "train",
        "config": str(TINY_EXPERIMENT),
        "base_overrides": [f"data.root={tiny_runs['data']}", "stage=satdiffmoe", f"init.vae_ckpt={tiny_runs['ae']}",
                           f"train.max_steps={max_steps}", "train.val_every=1", "data.epoch_length=8",
                           "train.devices=2", "train.strategy=ddp"],
        "params": {"train.lr": {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True},
                   "model.cond_dropout": {"choices": [0.0, 0.2]}},
        "objectives": [{"metric": "psnr", "direction": "maximize"}],
        "sampler": {"name": "random", "seed": 3},
        "pruner": {"name": "median", "n_startup_trials": 1},
        "n_trials": 2,
    }
    spec.update(fields)
    path = folder / "ddp_sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_ddp_training_sweep_trains_identical_parameters_on_every_rank(tmp_path, tiny_runs):
    sweep = ddp_sweep(tmp_path, tiny_runs)
    out = tmp_path / "out"
    result = run_cli(["sweep", str(sweep), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-4000:]

    study = optuna.load_study(study_name="ddp_lr", storage=f"sqlite:///{out / 'study.db'}")
    trials = study.trials
    assert len(trials) == 2 and trials[0].state == TrialState.COMPLETE
    lrs = {t.params["train.lr"] for t in trials}
    assert len(lrs) == 2  # two different trials, so a rank stuck on the first one would show
    for trial in trials:
        ranks = trial.user_attrs["ranks"]
        assert [r["rank"] for r in ranks] == [0, 1]
        assert not any("error" in r for r in ranks), ranks
        for report in ranks:
            assert report["params"] == trial.params
        assert ranks[1]["config_sha1"] == ranks[0]["config_sha1"]
        assert ranks[1]["weights_sum"] == pytest.approx(ranks[0]["weights_sum"], rel=1e-9, abs=1e-9)
        assert trial.intermediate_values, "the pruning callback reported nothing under DDP"
        assert f"rank 1: training trial {trial.number}" in result.stderr
    # rank 0 evaluated the whole test split, not the half DDP would give it
    evaluated = trials[0].user_attrs["eval"]
    assert evaluated["metrics"]["psnr"]["mean"] == trials[0].values[0]
    test_scenes = json.loads((tiny_runs["data"] / "manifest.json").read_text())["counts"]["test"]
    assert test_scenes >= 2 and evaluated["num_scenes"] == min(test_scenes, 3)  # data.test_subset=3


@pytest.mark.slow
def test_a_pruned_ddp_trial_stops_every_rank_early(tmp_path, tiny_runs):
    """The pruner's decision (a val/psnr floor no trial reaches) is broadcast inside fit: both ranks stop
    after the first validation instead of training on to max_steps, and rank 0 records the trial as pruned."""
    sweep = ddp_sweep(tmp_path, tiny_runs, max_steps=6, n_trials=1, pruner={"name": "threshold", "lower": 1.0e6})
    out = tmp_path / "out"
    result = run_cli(["sweep", str(sweep), "--out", str(out)])
    assert result.returncode == 0, result.stderr[-4000:]
    (trial,) = optuna.load_study(study_name="ddp_lr", storage=f"sqlite:///{out / 'study.db'}").trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # one report (epoch 0), then the stop
    assert [r["rank"] for r in trial.user_attrs["ranks"]] == [0, 1]
    assert not any("error" in r for r in trial.user_attrs["ranks"])
    log = (out / "trials" / "ddp_lr-trial-0" / "run" / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in log if "train/loss" in line]
    assert max(steps) < 5  # stopped at the first validation, far from max_steps=6
