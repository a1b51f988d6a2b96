"""The CLI's thread policy (satdiffmoe/threads.py): the free CPUs, shared among our own processes."""

import os
import subprocess
import sys
import time

import pytest
import torch

from satdiffmoe import threads
from satdiffmoe.cli import main
from satdiffmoe.errors import UserError


@pytest.mark.parametrize(("cpus", "busy", "processes", "expected"), [
    (2, 0.0, 1, 2),    # idle: every CPU
    (2, 0.3, 1, 2),    # a little background work does not cost a thread
    (2, 1.0, 1, 1),    # one busy process beside us: the CPU it leaves
    (2, 2.0, 1, 1),    # never fewer than one
    (2, 5.0, 1, 1),    # more busy than there are CPUs (other CPUs outside our affinity)
    (2, 0.0, 2, 1),    # two sweep workers / DDP ranks on 2 idle CPUs
    (16, 4.0, 3, 4),
    (4, None, 1, 4),   # no /proc/stat: all usable CPUs
])
def test_threads_are_the_free_cpus_shared_among_our_processes(cpus, busy, processes, expected):
    assert threads.choose(cpus, busy, processes) == expected


def test_a_fixed_count_wins_and_a_bad_one_is_refused(monkeypatch):
    monkeypatch.setenv(threads.ENV, "3")
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.fixed_setting() == (3, threads.ENV)
    monkeypatch.setenv(threads.ENV, "auto")  # auto defers to a user's OMP_NUM_THREADS
    assert threads.fixed_setting() == (5, "OMP_NUM_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.fixed_setting() is None
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(UserError, match=f"{threads.ENV}='{bad}' is not a thread count"):
            threads.fixed_setting()


def test_busy_cpus_sees_a_busy_looping_process():
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(1)  # let it start spinning (not a timing assertion: only lets the process exist)
        busy = threads.busy_cpus(window_s=0.5)
    finally:
        burner.kill()
        burner.wait()
    assert busy is not None and busy >= 0.5


def test_auto_divides_the_free_cpus_among_torchrun_ranks(monkeypatch):
    monkeypatch.setenv(threads.ENV, "auto")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    choice = threads.apply(quiet=True)
    assert choice.source == "auto" and choice.busy is not None
    assert choice.threads == threads.choose(choice.cpus, choice.busy, 2) == torch.get_num_threads()
    # sweep workers started by this process share what it measured
    assert threads.per_worker(2) == threads.choose(choice.cpus, choice.busy, 2)


def test_the_cli_flag_sets_torch_threads_and_is_inherited(monkeypatch, tmp_path):
    monkeypatch.setenv(threads.ENV, "auto")
    code = main(["--threads", "3", "report", "--runs", str(tmp_path / "none"), "--out", str(tmp_path / "r")])
    assert code == 2  # the report fails on the missing run; the threads were set before it ran
    assert torch.get_num_threads() == 3 and os.environ[threads.ENV] == "3"
    assert threads.per_worker(4) == 3  # a fixed count is per process, for workers too


def test_the_automatic_choice_is_printed_as_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env[threads.ENV] = "auto"
    proc = subprocess.run([sys.executable, "-m", "satdiffmoe.cli", "report", "--runs", str(tmp_path / "none"),
                           "--out", str(tmp_path / "r")], env=env, capture_output=True, text=True, timeout=600)
    first, *rest = proc.stderr.strip().splitlines()
    assert first.startswith("threads: ") and " CPUs (" in first and "busy with other processes" in first
    assert rest[-1].startswith("error: ")
