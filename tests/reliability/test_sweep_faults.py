"""Sweeps under faults, seen from outside: independent `satdiffmoe sweep` processes share one study
(SQLite, and PostgreSQL when a server can be started here); one of them is SIGKILLed mid-trial.
Every grid point must end COMPLETE exactly once, and the killed trial is failed and retried.
"""

from __future__ import annotations

import itertools
import os
import signal
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from postgres_server import Unavailable, start_postgres
from reliability_helpers import HANG_GUARD_S, TINY_EXPERIMENT, start_cli, start_script, wait_for

PAUSE_DURING = Path(__file__).with_name("pause_during.py")
EVALUATE = "satdiffmoe.evaluation.evaluator.Evaluator.evaluate"  # where the victim is caught: mid-trial

FUSION, NUM_LR = [1, "off"], [1, 2, 3]
GRID = sorted(itertools.product(["1", "off"], NUM_LR))


@pytest.fixture(scope="module")
def postgres():
    try:
        url, stop = start_postgres()
    except Unavailable as exc:
        pytest.skip(f"PostgreSQL not available: {exc}")
    yield url
    stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return request.getfixturevalue("postgres")


def write_sweep(folder: Path, tiny_runs, study: str) -> Path:
    spec = {
        "study": study, "config": str(TINY_EXPERIMENT), "ckpt": str(tiny_runs["sdm"]),
        "base_overrides": [f"data.root={tiny_runs['data']}", "eval.seeds=[0,1]"],
        "params": {"sampler.fusion_every": {"choices": FUSION}, "data.num_lr": {"choices": NUM_LR}},
        "objectives": [{"metric": "psnr", "direction": "maximize"}],
        "sampler": {"name": "grid"},
        # a dead worker's trial is noticed within ~11 s; a live one's heartbeat thread, starved on a
        # loaded machine, must not look dead (2 s left it no room)
        "heartbeat": {"interval": 1, "grace": 10},
    }
    path = folder / f"{study}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def study_trials(storage: str, study: str):
    try:
        return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)
    except KeyError:  # not created yet
        return []


@pytest.mark.slow
def test_killed_sweep_process_loses_and_repeats_no_trial(storage, tmp_path, tiny_runs):
    study = f"faults_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_")
    sweep = write_sweep(tmp_path, tiny_runs, study)
    # The victim pauses inside its first trial's evaluation (pause_during.py), so it is caught mid-trial
    # however fast trials are: waiting from outside for a trial seen RUNNING raced with a trial lasting a
    # second on a loaded machine. The survivor starts once it is paused, and works beside it for a trial.
    marker, logs = tmp_path / "victim_paused", [tmp_path / "worker0.log", tmp_path / "worker1.log"]
    sweep_args = ["sweep", str(sweep), "--storage", storage, "--out"]
    victim = start_script(PAUSE_DURING, [EVALUATE, str(marker), *sweep_args, str(tmp_path / "out0")], logs[0])
    wait_for(victim, logs[0], marker.is_file, "the victim reaching a trial's evaluation")
    survivor = start_cli([*sweep_args, str(tmp_path / "out1")], logs[1])
    wait_for(survivor, logs[1], lambda: any(t.state == TrialState.COMPLETE for t in study_trials(storage, study)),
             "a trial completed by the survivor")
    (killed,) = [t for t in study_trials(storage, study) if t.state == TrialState.RUNNING
                 and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=HANG_GUARD_S) == 0, (tmp_path / "worker1.log").read_text()[-3000:]

    trials = study_trials(storage, study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    points = sorted((str(t.params["sampler.fusion_every"]), t.params["data.num_lr"]) for t in complete)
    assert points == GRID  # every grid point exactly once: none lost, none duplicated
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
