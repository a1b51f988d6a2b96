"""Ctrl-C (SIGINT) and SIGTERM stop every long command with one line saying what was kept, exit status
130 / 143, no traceback, and no half-written output: files that existed before are byte-identical.

Each test starts the real CLI, waits for a progress marker (a hang guard bounds the wait, never a
speed check), then sends the signal once.
"""

from __future__ import annotations

import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import yaml
from PIL import Image
from reliability_helpers import HANG_GUARD_S, TINY_EXPERIMENT, cli_env, start_cli, start_script, tiny_args, wait_for

from satdiffmoe.cli import main

EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}


def interrupt(process: subprocess.Popen, log: Path, signum: int) -> str:
    """Send `signum` once; the command must exit 128 + signum without a traceback. Returns its last line."""
    process.send_signal(signum)
    assert process.wait(timeout=HANG_GUARD_S) == EXIT[signum], log.read_text()[-3000:]
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    return text.strip().splitlines()[-1]


def in_log(log: Path, marker: str):
    return lambda: log.is_file() and marker in log.read_text(errors="replace")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def resume_advice(run: Path, run_id: str) -> str:
    """What the line must advise: resume from last.ckpt when one was written, else a fresh start."""
    if (run / "checkpoints" / "last.ckpt").is_file():
        return f"run_id={run_id} resume=true"
    return f"nothing was saved; start again with run_id={run_id} (without resume=true)"


# ---------------------------------------------------------------------------------------------- train
def test_sigint_stops_training_with_one_line_and_exit_130(tiny_runs, tmp_path):
    log = tmp_path / "train.log"
    metrics = tmp_path / "tiny" / "ctrlc" / "metrics.jsonl"
    process = start_cli(["train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder",
                                             "train.max_steps=100000", run_id="ctrlc")], log)
    wait_for(process, log, lambda: metrics.is_file() and any(
        "train/loss" in line for line in metrics.read_text().splitlines()[:-1]))
    last = interrupt(process, log, signal.SIGINT)
    assert last.startswith("interrupted at step ") and resume_advice(tmp_path / "tiny" / "ctrlc", "ctrlc") in last


def test_ctrl_c_before_the_first_checkpoint_says_nothing_was_saved(tiny_runs, tmp_path):
    """Ctrl-C right after the first training step: no last.ckpt, so resume=true would fail."""
    log = tmp_path / "train.log"
    helper = Path(__file__).with_name("signal_during.py")
    process = start_script(helper, ["satdiffmoe.training.autoencoder.AutoencoderTask.training_step", "SIGINT",
                                    "train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder",
                                                        "train.max_steps=100000", "train.val_every=1000",
                                                        run_id="early")], log)
    assert process.wait(timeout=HANG_GUARD_S) == 130, log.read_text()[-3000:]
    last = log.read_text().strip().splitlines()[-1]
    assert not (tmp_path / "tiny" / "early" / "checkpoints" / "last.ckpt").exists()
    assert last.startswith("interrupted at step ") and "nothing was saved" in last and "resume=true (" not in last, last


def test_sigterm_stops_training_like_ctrl_c_with_exit_143(tiny_runs, tmp_path):
    log = tmp_path / "train.log"
    metrics = tmp_path / "tiny" / "term" / "metrics.jsonl"
    process = start_cli(["train", *tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder",
                                             "train.max_steps=100000", run_id="term")], log)
    wait_for(process, log, lambda: metrics.is_file() and any(
        "train/loss" in line for line in metrics.read_text().splitlines()[:-1]))
    last = interrupt(process, log, signal.SIGTERM)
    assert last.startswith("interrupted at step ") and resume_advice(tmp_path / "tiny" / "term", "term") in last


# ------------------------------------------------------------------------------------------- evaluate
def test_sigterm_during_evaluate_writes_nothing_and_keeps_the_previous_results(tiny_runs, tmp_path):
    run = tmp_path / "sdm"
    shutil.copytree(tiny_runs["sdm"], run)
    common = [str(TINY_EXPERIMENT), f"data.root={tiny_runs['data']}", f"ckpt={run}"]
    assert main(["evaluate", *common, "eval.name=kept"]) == 0
    before = snapshot(run / "eval")
    assert "kept.json" in before
    log = tmp_path / "evaluate.log"
    seeds = ",".join(str(seed) for seed in range(200))  # far more than will run before the signal
    # other settings: another name, and no references (those of other seeds would not replace the kept ones)
    process = start_cli(["evaluate", *common, "eval.name=longer", "eval.references=false", "sampler.nfe=20",
                         f"eval.seeds=[{seeds}]"], log)
    wait_for(process, log, in_log(log, "evaluating seed 1"))
    last = interrupt(process, log, signal.SIGTERM)
    assert last == f"interrupted: no results written; the evaluations already in {run / 'eval'} are untouched"
    assert snapshot(run / "eval") == before


# --------------------------------------------------------------------------------------------- sample
def test_sigint_during_sample_leaves_the_existing_output_and_no_partial_file(tiny_runs, tmp_path):
    rng = np.random.default_rng(0)
    lrs = []
    for i in range(3):  # 400 px LRs in 4 px tiles: thousands of tiles, minutes of sampling
        lrs.append(tmp_path / f"lr{i}.png")
        Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(lrs[-1])
    out, uncertainty = tmp_path / "sr.png", tmp_path / "u.tif"
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(out)  # an earlier result the user keeps
    before = snapshot(tmp_path)
    log = tmp_path.parent / f"{tmp_path.name}-sample.log"
    process = start_cli(["sample", "--ckpt", str(tiny_runs["sdm"]), "--lr", *map(str, lrs), "--dt", "-3", "1", "5",
                         "--out", str(out), "--uncertainty", str(uncertainty), "sampler.nfe=20"], log)
    wait_for(process, log, in_log(log, "UNet calls"))  # the estimate printed right before sampling starts
    last = interrupt(process, log, signal.SIGINT)
    assert last == f"interrupted: nothing written ({out} is untouched, no {uncertainty})"
    assert snapshot(tmp_path) == before  # sr.png byte-identical, no u.tif, no .partial file


# ---------------------------------------------------------------------------------------------- sweep
def test_sigterm_during_sweep_keeps_finished_trials_and_fails_the_running_one(tiny_runs, tmp_path):
    nfes = list(range(1, 41))
    spec = {"study": "interrupted", "config": str(TINY_EXPERIMENT), "ckpt": str(tiny_runs["sdm"]),
            "base_overrides": [f"data.root={tiny_runs['data']}"], "sampler": {"name": "grid"},
            "params": {"sampler.nfe": {"choices": nfes}}, "objectives": [{"metric": "psnr", "direction": "maximize"}]}
    sweep, database = tmp_path / "sweep.yaml", tmp_path / "study.db"
    sweep.write_text(yaml.safe_dump(spec))
    log = tmp_path / "sweep.log"
    process = start_cli(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--storage", f"sqlite:///{database}"],
                        log)

    def states() -> list[str]:
        if not database.is_file():
            return []
        with sqlite3.connect(database, timeout=20 * 60) as db:  # lock wait: a hang guard only
            try:
                return [state for (state,) in db.execute("SELECT state FROM trials")]
            except sqlite3.OperationalError:  # tables not created yet
                return []

    wait_for(process, log, lambda: "COMPLETE" in states())
    last = interrupt(process, log, signal.SIGTERM)
    match = re.fullmatch(r"interrupted: after (\d+) of 40 trials; the study in (.+) keeps them, re-run the same "
                         r"command to continue \(the interrupted trial runs again\)", last)
    assert match, last
    trials = states()
    assert int(match.group(1)) == trials.count("COMPLETE") >= 1
    assert "RUNNING" not in trials and trials.count("FAIL") <= 1  # the interrupted trial, queued again on re-run


def test_sigterm_inside_a_study_write_lets_the_write_finish(tiny_runs, tmp_path):
    """A signal inside one of the objective's writes to the study waits until the write is committed
    (cut off before its commit, the write was lost, and a half-done database session could make
    Optuna's own FAIL write raise): here the trial's `worker` attribute, written just before sampling."""
    spec = {"study": "write", "config": str(TINY_EXPERIMENT), "ckpt": str(tiny_runs["sdm"]),
            "base_overrides": [f"data.root={tiny_runs['data']}"], "sampler": {"name": "grid"},
            "params": {"sampler.nfe": {"choices": [1, 2]}}, "objectives": [{"metric": "psnr", "direction": "maximize"}]}
    sweep, database = tmp_path / "sweep.yaml", tmp_path / "study.db"
    sweep.write_text(yaml.safe_dump(spec))
    helper = Path(__file__).with_name("signal_during.py")
    result = subprocess.run([sys.executable, str(helper), "optuna.storages._rdb.storage.RDBStorage."
                             "_set_trial_attr_without_commit", "SIGTERM", "--arg", "worker", "sweep", str(sweep),
                             "--out", str(tmp_path / "out"), "--storage", f"sqlite:///{database}"],
                            capture_output=True, text=True, env=cli_env(), timeout=HANG_GUARD_S, check=False)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("interrupted: after 0 of 2 trials;")
    (trial,) = optuna.load_study(study_name="write", storage=f"sqlite:///{database}").trials
    assert trial.state == optuna.trial.TrialState.FAIL
    assert re.fullmatch(r".+:\d+", trial.user_attrs.get("worker", "")), trial.user_attrs  # host:pid, committed


# -------------------------------------------------------------------------------------------- prepare
def test_sigint_during_prepare_overwrite_keeps_the_earlier_shards_and_manifest(tmp_path):
    data = tmp_path / "data"
    small = ["prepare", "synthetic", "--out", str(data), "--num-scenes", "16", "--hr-size", "16", "--scale", "4",
             "--max-lr", "2", "--shard-size", "4"]
    assert main(small) == 0
    before = snapshot(data)
    log = tmp_path / "prepare.log"
    process = start_cli([*small[:5], "100000", *small[6:], "--overwrite", "--workers", "1"], log)
    # several partial shards closed: the run is well inside writing the new set
    wait_for(process, log, lambda: len(list(data.glob(".*.tar.partial"))) >= 3)
    last = interrupt(process, log, signal.SIGINT)
    assert last == f"interrupted: no shard or manifest written to {data}; its earlier shards and manifest.json are " \
                   "untouched"
    assert snapshot(data) == before  # the same files, byte for byte: no partial shard, no mixed set


# --------------------------------------------------------------------------------------------- export
def test_sigterm_during_export_keeps_the_earlier_export_whole(tiny_runs, tmp_path):
    out = tmp_path / "exported"
    assert main(["export", str(tiny_runs["sdm"]), "--out", str(out)]) == 0
    before = snapshot(out)
    # the signal lands right after the first weight file of the new export is written
    helper = Path(__file__).with_name("signal_during.py")
    result = subprocess.run([sys.executable, str(helper), "safetensors.torch.save_file", "SIGTERM", "export",
                             str(tiny_runs["sdm"]), "--out", str(out), "--overwrite"], capture_output=True, text=True,
                            env=cli_env(), timeout=HANG_GUARD_S, check=False)
    assert result.returncode == 143, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"interrupted: nothing written; {out} is untouched"
    assert snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no .partial folder left


# ----------------------------------------------------------------------------------------- quickstart
def test_sigint_during_quickstart_names_the_step_and_keeps_the_finished_ones(tmp_path):
    out = tmp_path / "qs"
    log = tmp_path / "quickstart.log"
    process = start_cli(["quickstart", "--out", str(out), "logging.wandb.mode=disabled"], log)
    wait_for(process, log, in_log(log, "=== [2/"))  # the shards are written, training has begun
    last = interrupt(process, log, signal.SIGINT)
    assert re.fullmatch(rf"interrupted in step 2/\d+ \(train autoencoder\); step 1 is kept in {re.escape(str(out))}; "
                        r"run the same `satdiffmoe quickstart` again to continue from there", last), last
    assert (out / "data" / "manifest.json").is_file()
    assert not list((out / "data").glob(".*.partial"))
