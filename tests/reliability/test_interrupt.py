"""Ctrl-C (SIGINT) stops `train` within seconds with one line saying how to continue, and exit code 130."""

from __future__ import annotations

import signal
import time

from reliability_helpers import HANG_GUARD_S, start_cli, tiny_args


def test_sigint_stops_training_with_one_line_and_exit_130(tiny_runs, tmp_path):
    log = tmp_path / "train.log"
    metrics = tmp_path / "tiny" / "ctrlc" / "metrics.jsonl"
    process = start_cli(["train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder",
                                             "train.max_steps=100000", run_id="ctrlc")], log)
    deadline = time.monotonic() + HANG_GUARD_S  # a hang guard, not a speed check
    while not (metrics.is_file() and any("train/loss" in line for line in metrics.read_text().splitlines()[:-1])):
        assert process.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=HANG_GUARD_S) == 130, log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text
    last = text.strip().splitlines()[-1]
    assert last.startswith("interrupted at step ") and "run_id=ctrlc resume=true" in last
