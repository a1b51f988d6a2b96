"""Helpers the reliability tests import (pytest puts this folder on sys.path; the name is unique in tests/)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TINY_EXPERIMENT = Path(__file__).with_name("tiny.yaml")
REPO = Path(__file__).resolve().parents[2]
# Timeouts in these tests are hang guards, never performance checks: a loaded machine (4x, or a
# second `make test` beside this one) must still pass. Only a process stuck for this long fails.
HANG_GUARD_S = 20 * 60


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a `satdiffmoe` subprocess: one thread, W&B off, the source tree importable."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WANDB_MODE="disabled",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    env.update(extra)
    return env


def _default_sigint() -> None:
    # A test run started in the background by a non-interactive shell inherits SIGINT as ignored,
    # and Python keeps an ignored SIGINT ignored: the child would never see the tests' Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_cli(args: list[str], log_path: Path, **env: str) -> subprocess.Popen:
    """`satdiffmoe ARGS` in a child process whose stdout+stderr go to `log_path`."""
    return _start(["-m", "satdiffmoe.cli", *args], log_path, **env)


def start_script(script: Path, args: list[str], log_path: Path, **env: str) -> subprocess.Popen:
    """A fault-injection wrapper of the CLI (signal_during.py, pause_during.py), like `start_cli`."""
    return _start([str(script), *args], log_path, **env)


def _start(argv: list[str], log_path: Path, **env: str) -> subprocess.Popen:
    with open(log_path, "wb") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, *argv], stdout=handle, stderr=subprocess.STDOUT, env=cli_env(**env),
                                cwd=REPO, start_new_session=True, preexec_fn=_default_sigint)


def wait_for(process: subprocess.Popen, log: Path, ready: Callable[[], bool], what: str = "the awaited progress") -> None:
    """Poll `ready` until it holds; fail with the log's tail if `process` exits first or nothing happens
    within the hang guard (never a speed check)."""
    deadline = time.monotonic() + HANG_GUARD_S
    while not ready():
        assert process.poll() is None, f"exited before {what}:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"no {what} within the hang guard:\n{log.read_text()[-3000:]}"
        time.sleep(0.2)


def run_cli(args: list[str], timeout: float = HANG_GUARD_S, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "satdiffmoe.cli", *args], capture_output=True, text=True,
                          env=cli_env(**env), cwd=REPO, timeout=timeout, check=False)


def error_lines(stderr: str) -> list[str]:
    """The non-empty lines of stderr that are not log records (log records start with HH:MM:SS)."""
    return [line for line in stderr.splitlines() if line.strip() and not line[:2].isdigit()]


def tiny_args(root: Path, data: Path, *overrides: str, run_id: str | None = None) -> list[str]:
    args = [str(TINY_EXPERIMENT), f"run_root={root}", f"data.root={data}", *overrides]
    return args + ([f"run_id={run_id}"] if run_id else [])
