"""Two-process CPU DDP (gloo) through the project's own Trainer: validation metrics equal the
single-process ones on uneven per-rank shares, and training on uneven shards neither hangs nor
loses steps. (Exactly-once validation records are covered by tests/data/test_datamodule_ddp.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ddp_validate
import pytest
from reliability_helpers import HANG_GUARD_S, REPO, cli_env, run_cli, tiny_args

from satdiffmoe.cli import main


@pytest.fixture(scope="module")
def uneven_data(tmp_path_factory) -> Path:
    """5 val scenes (2 ranks get 3 and 2) and 3 train shards of 8, 8 and 4 scenes."""
    data = tmp_path_factory.mktemp("ddp_data") / "synth"
    assert main(["prepare", "synthetic", "--out", str(data), "--num-scenes", "30", "--hr-size", "16", "--scale", "4",
                 "--max-lr", "3", "--shard-size", "8", "--val-frac", "0.17", "--test-frac", "0.1"]) == 0
    counts = json.loads((data / "manifest.json").read_text())["counts"]
    assert counts["val"] % 2 == 1 and len(list(data.glob("train-*.tar"))) % 2 == 1
    return data


def validate_in_ddp(devices: int, ckpt: Path, data: Path, tmp_path: Path, stage: str = "autoencoder") -> dict:
    """ddp_validate.py in a child process: Lightning's DDP launcher re-runs the script for rank 1."""
    out = tmp_path / f"metrics{devices}.json"
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_validate.py")), str(ckpt), str(data),
                             str(tmp_path / "runs"), str(devices), str(out), stage], capture_output=True, text=True,
                            cwd=REPO, env=cli_env(), timeout=HANG_GUARD_S, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_validation_metrics_are_reduced_over_ranks_like_one_process(uneven_data, tiny_runs, tmp_path):
    ddp_validate.main(str(tiny_runs["ae"]), str(uneven_data), str(tmp_path / "runs"), 1, str(tmp_path / "one.json"))
    single = json.loads((tmp_path / "one.json").read_text())
    ddp = validate_in_ddp(2, tiny_runs["ae"], uneven_data, tmp_path)
    assert {"val/loss", "val/psnr", "val/ssim"} <= set(single)
    for name in ("val/loss", "val/psnr", "val/ssim", "val/latent_scale"):
        assert ddp[name] == pytest.approx(single[name], rel=1e-5), name


@pytest.mark.slow
def test_a_validation_scene_samples_the_same_on_one_rank_of_two(uneven_data, tiny_runs, tmp_path):
    # val/psnr of SatDiffMoE is computed from its samples: it matches one process only if every scene
    # draws the same noise whichever rank, batch and position it lands on (sampling/noise.py); with the
    # noise of one generator per rank-local batch it did not
    ddp_validate.main(str(tiny_runs["sdm"]), str(uneven_data), str(tmp_path / "runs"), 1, str(tmp_path / "one.json"),
                      "satdiffmoe")
    single = json.loads((tmp_path / "one.json").read_text())
    ddp = validate_in_ddp(2, tiny_runs["sdm"], uneven_data, tmp_path, stage="satdiffmoe")
    for name in ("val/psnr", "val/ssim"):
        assert ddp[name] == pytest.approx(single[name], rel=1e-5), name


@pytest.mark.slow
def test_ddp_training_on_uneven_shards_finishes_every_step(uneven_data, tmp_path):
    result = run_cli(["train", *tiny_args(tmp_path, uneven_data, "stage=autoencoder", "train.max_steps=4",
                                          "train.devices=2", "train.strategy=ddp", run_id="ddp")])
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "tiny" / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in records if "train/loss" in r) == 3  # steps 0..3 on rank 0, no hang
    assert any("val/psnr" in r for r in records)
