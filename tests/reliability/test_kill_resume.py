"""A training run killed with SIGKILL mid-epoch resumes from `last.ckpt` with its step count,
optimizer state and EMA intact, and its metric log stays usable for reports.

The run is a real `satdiffmoe train` process on real shards; the kill comes from outside, as a
scheduler's preemption or an OOM killer would deliver it.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from reliability_helpers import start_cli, tiny_args, wait_for

from satdiffmoe.cli import main
from satdiffmoe.reports.sources import read_training_run

VAL_EVERY = 3  # checkpoints (last.ckpt + top-k) are written at every validation
EXTRA_STEPS = 3


def logged_steps(metrics: Path) -> list:
    if not metrics.is_file():
        return []
    lines = metrics.read_text().splitlines()
    return [json.loads(line)["step"] for line in lines[:-1] if "train/loss" in line]  # last line may be partial


def optimizer_steps(checkpoint: dict) -> set:
    return {int(state["step"]) for opt in checkpoint["optimizer_states"] for state in opt["state"].values()}


@pytest.fixture(scope="module")
def killed_run(tiny_runs, tmp_path_factory):
    """A run SIGKILLed after its second checkpoint and a few more steps: (run folder, killed-at checkpoint)."""
    root = tmp_path_factory.mktemp("killed")
    run = root / "tiny" / "kill"
    log = root / "train.log"
    process = start_cli(["train", *tiny_args(root, tiny_runs["data"], "stage=autoencoder", "train.max_steps=100000",
                                             f"train.val_every={VAL_EVERY}", "train.ema_decay=0.9",
                                             run_id="kill")], log)
    last = run / "checkpoints" / "last.ckpt"
    try:
        wait_for(process, log, lambda: last.is_file() and torch.load(last, weights_only=True)["global_step"]
                 >= 2 * VAL_EVERY, "a second validation checkpoint")
        saved = torch.load(last, weights_only=True)["global_step"]
        wait_for(process, log, lambda: max(logged_steps(run / "metrics.jsonl"), default=0) > saved + 1,
                 "training steps after that checkpoint")
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    return run, torch.load(last, weights_only=True), log


@pytest.fixture(scope="module")
def resumed_run(killed_run, tiny_runs):
    run, at_kill, _ = killed_run
    before = run.joinpath("metrics.jsonl").read_text().count("\n")
    target = at_kill["global_step"] + EXTRA_STEPS
    assert main(["train", *tiny_args(run.parents[1], tiny_runs["data"], "stage=autoencoder",
                                     f"train.max_steps={target}", f"train.val_every={VAL_EVERY}",
                                     "train.ema_decay=0.9", "resume=true", run_id="kill")]) == 0
    records = [json.loads(line) for line in run.joinpath("metrics.jsonl").read_text().splitlines()]
    return torch.load(run / "checkpoints" / "last.ckpt", weights_only=True), records[before:], target


def test_the_kill_left_a_complete_checkpoint_mid_epoch(killed_run):
    _, at_kill, _ = killed_run
    assert at_kill["global_step"] >= 2 * VAL_EVERY and at_kill["global_step"] % VAL_EVERY == 0
    assert at_kill["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"] > 0  # mid-epoch


def test_resume_continues_the_step_count(resumed_run, killed_run):
    final, new_records, target = resumed_run
    assert final["global_step"] == target
    resumed_steps = [r["step"] for r in new_records if "train/loss" in r]
    assert min(resumed_steps) >= killed_run[1]["global_step"] - 1  # not from 0
    assert len(resumed_steps) == EXTRA_STEPS


def test_resume_restores_the_optimizer_state(resumed_run, killed_run):
    final, _, _ = resumed_run
    # Adam counts its own steps: restored moments continue the count, fresh ones would restart at 1
    assert optimizer_steps(killed_run[1]) == {killed_run[1]["global_step"]}
    assert optimizer_steps(final) == {final["global_step"]}


def test_resume_restores_the_ema(resumed_run, killed_run):
    final, _, _ = resumed_run
    at_kill = killed_run[1]
    averaged = int(final["averaging_state"]["n_averaged"]) - int(at_kill["averaging_state"]["n_averaged"])
    assert averaged == EXTRA_STEPS  # the average continued instead of restarting from the raw weights
    assert "current_model_state" in final  # raw weights kept beside the EMA weights
    ema, raw = final["state_dict"], final["current_model_state"]
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)


def test_wall_clock_continues_across_the_kill(resumed_run, killed_run):
    _, new_records, _ = resumed_run
    elapsed_at_kill = next(v["elapsed"] for k, v in killed_run[1]["callbacks"].items() if k.startswith("TrainingClock"))
    assert min(r["wall_time"] for r in new_records) >= elapsed_at_kill


def test_reports_see_each_step_once_after_a_resume(resumed_run, killed_run):
    """Steps between the last checkpoint and the kill were trained twice; the curve keeps the resumed ones."""
    run = killed_run[0]
    steps, _, _ = read_training_run(run).series("train/loss")
    assert len(steps) == len(set(steps.tolist()))
    assert steps.tolist() == sorted(steps.tolist())
