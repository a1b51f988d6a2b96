"""Sweeps under faults, seen from outside: independent `satdiffmoe sweep` processes share one study
(SQLite, and PostgreSQL when a server can be started here); one of them is SIGKILLed mid-trial.
Every grid point must end COMPLETE exactly once, and the killed trial is failed and retried.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import yaml
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState
from postgres_server import Unavailable, start_postgres
from reliability_helpers import HANG_GUARD_S, TINY_EXPERIMENT, start_cli

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
        "base_overrides": [f"data.root={tiny_runs['data']}", "eval.seeds=[0,1,2,3,4,5,6,7,8,9]"],
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


def kill_mid_trial(victim, storage: str, study: str, log: Path):
    """SIGKILL `victim` while one of its trials is RUNNING; returns that trial.

    Once a trial is seen running, the victim is frozen (SIGSTOP) and the storage read again, so the
    trial it is seen running is still the one it runs when the kill lands: on a loaded machine a
    trial seen RUNNING could otherwise finish before the kill, and the test would wait for a retry
    that never comes.
    """
    def running() -> list:
        try:
            return [t for t in study_trials(storage, study) if t.state == TrialState.RUNNING
                    and t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
        except sqlalchemy.exc.OperationalError:  # frozen while it held the SQLite write lock
            return []

    deadline = time.monotonic() + HANG_GUARD_S  # a hang guard, not a speed check
    while True:
        assert time.monotonic() < deadline, "no trial of the victim process was seen RUNNING"
        assert victim.poll() is None, log.read_text()[-2000:]
        if running():
            os.killpg(victim.pid, signal.SIGSTOP)
            if confirmed := running():
                os.killpg(victim.pid, signal.SIGKILL)
                return confirmed[0]
            os.killpg(victim.pid, signal.SIGCONT)
        time.sleep(0.05)


@pytest.mark.slow
def test_killed_sweep_process_loses_and_repeats_no_trial(storage, tmp_path, tiny_runs):
    study = f"faults_{os.getpid()}_{tmp_path.name[-12:]}".replace("-", "_")
    sweep = write_sweep(tmp_path, tiny_runs, study)
    processes = [start_cli(["sweep", str(sweep), "--storage", storage, "--out", str(tmp_path / f"out{i}")],
                           tmp_path / f"worker{i}.log") for i in range(2)]
    victim, survivor = processes
    killed = kill_mid_trial(victim, storage, study, tmp_path / "worker0.log")
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
