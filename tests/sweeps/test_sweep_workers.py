"""Several workers on one storage, and a worker killed mid-trial (real processes, real storages)."""

import itertools
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from optuna.storages import JournalStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from satdiffmoe.cli import main

# Heartbeats and trial retry are Optuna "experimental" features; the sweep uses them on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

GRID = sorted(itertools.product(["1", "off"], [1, 2]))  # (fusion_every, num_lr) of the default test sweep


def grid_points(trials):
    return sorted((str(t.params["sampler.fusion_every"]), t.params["data.num_lr"]) for t in trials)


def test_two_worker_processes_split_the_grid_without_duplicates(write_sweep, tmp_path):
    out = tmp_path / "out"
    assert main(["sweep", str(write_sweep()), "--out", str(out), "--workers", "2"]) == 0
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'study.db'}")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert grid_points(complete) == GRID  # every point once: no duplicates, none missing
    workers = {t.user_attrs["worker"].rsplit(":", 1)[1] for t in complete}
    assert str(os.getpid()) not in workers  # the trials ran in the spawned worker processes


def _wait_for_running_trial(journal, process, limit_s=300.0):
    """The first trial seen RUNNING with its parameters set, i.e. evaluating (polled in the journal)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists():
            storage = JournalStorage(JournalFileBackend(str(journal)))
            for summary in optuna.get_all_study_summaries(storage):
                running = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(
                    deepcopy=False, states=(TrialState.RUNNING,))
                if running and running[0].params:
                    return running[0]
        time.sleep(0.05)
    pytest.fail(f"no trial started RUNNING (sweep exit code {process.poll()})")


def test_a_trial_whose_worker_was_killed_is_failed_and_retried(write_sweep, tmp_path):
    sweep, out = write_sweep(), tmp_path / "out"
    journal = tmp_path / "journal.log"
    argv = ["sweep", str(sweep), "--out", str(out), "--storage", f"journal:{journal}"]
    process = subprocess.Popen([sys.executable, "-m", "satdiffmoe.cli", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = _wait_for_running_trial(journal, process)
    process.send_signal(signal.SIGKILL)
    process.wait()

    # Rerun: the dead trial's heartbeat (1 s, grace 2 s) goes stale, it is failed and queued again.
    assert main(argv) == 0
    study = optuna.load_study(study_name="tiny", storage=JournalStorage(JournalFileBackend(str(journal))))
    trials = study.get_trials()
    assert trials[killed.number].state == TrialState.FAIL
    retries = [t for t in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert [t.state for t in retries] == [TrialState.COMPLETE]
    assert retries[0].params == killed.params
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert grid_points(complete) == GRID
