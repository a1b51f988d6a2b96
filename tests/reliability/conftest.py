"""Real pieces for the fault-injection tests: synthetic shards and tiny checkpoints made by the CLI.

Everything is built once per session through `satdiffmoe prepare` / `satdiffmoe train`, so the
faults are injected into exactly what users get.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from reliability_helpers import TINY_EXPERIMENT

from satdiffmoe.cli import main


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """24 synthetic scenes (16 px HR, ×4, up to 4 LRs) in shards of 8."""
    data = tmp_path_factory.mktemp("reliability_data") / "synth"
    assert main(["prepare", "synthetic", "--out", str(data), "--num-scenes", "24", "--hr-size", "16",
                 "--scale", "4", "--max-lr", "4", "--shard-size", "8"]) == 0
    return data


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """{"data", "root", "ae", "sdm"}: autoencoder and SatDiffMoE run folders, 2 steps each."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("reliability_runs")
    common = [str(TINY_EXPERIMENT), f"run_root={root}", f"data.root={tiny_data}"]
    assert main(["train", *common, "stage=autoencoder", "run_id=ae"]) == 0
    assert main(["train", *common, "stage=satdiffmoe", "run_id=sdm", f"init.vae_ckpt={root / 'tiny' / 'ae'}"]) == 0
    torch.set_num_threads(threads)
    return {"data": tiny_data, "root": root, "ae": root / "tiny" / "ae", "sdm": root / "tiny" / "sdm"}

