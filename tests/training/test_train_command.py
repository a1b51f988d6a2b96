"""`satdiffmoe train` end to end on real WebDataset shards written by `satdiffmoe prepare synthetic`."""

import json

import pytest
import torch
from training_toys import TINY

from satdiffmoe.cli import main
from satdiffmoe.training.checkpoints import load_task


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "synthsat"
    assert main(["prepare", "synthetic", "--out", str(out), "--num-scenes", "24", "--hr-size", "16",
                 "--scale", "4", "--shard-size", "8"]) == 0
    return out


def test_train_command_trains_autoencoder_on_shards_and_resumes(shards, tmp_path, capsys):
    # 16 px scenes are too small for the quickstart's LPIPS term (AlexNet needs 31 px): L1 only here
    args = ["train", "experiments/quickstart.yaml", *TINY, "stage=autoencoder", f"data.root={shards}",
            f"run_root={tmp_path}", "run_id=cli", "data.epoch_length=8", "train.perceptual_weight=0",
            "train.max_steps=2"]
    assert main(args) == 0
    run = tmp_path / "quickstart" / "cli"
    assert str(run) in capsys.readouterr().out  # the run folder is printed at the end
    assert main(args[:-1] + ["train.max_steps=4", "resume=true"]) == 0
    task = load_task(run, expect_stage="autoencoder")
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    assert task.cfg.data.root == str(shards)
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(steps) >= 3  # the resumed run appended to the same log


def test_train_command_rejects_resume_without_run_id(tmp_path, capsys):
    assert main(["train", "experiments/quickstart.yaml", "resume=true", f"run_root={tmp_path}"]) == 2
    assert "run_id" in capsys.readouterr().err
