"""Real pieces for the sweep tests: synthetic shards, a tiny SatDiffMoE checkpoint, sweep files.

The checkpoints are trained once per session through the `satdiffmoe train` CLI, 2 steps per stage
(autoencoder, then SatDiffMoE on its VAE).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sweep_helpers import TINY_EXPERIMENT, sweep_file

from satdiffmoe.cli import main


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> dict[str, Path]:
    """{"data": shard folder (2 test scenes), "vae": autoencoder run folder, "ckpt": SatDiffMoE run folder}."""
    root = tmp_path_factory.mktemp("sweep_model")
    data, runs = root / "data", root / "runs"
    assert main(["prepare", "synthetic", "--out", str(data), "--num-scenes", "24", "--hr-size", "16",
                 "--scale", "4", "--max-lr", "4", "--shard-size", "8"]) == 0
    common = [str(TINY_EXPERIMENT), f"run_root={runs}", f"data.root={data}"]
    assert main(["train", *common, "stage=autoencoder", "run_id=ae"]) == 0
    assert main(["train", *common, "stage=satdiffmoe", "run_id=sdm", f"init.vae_ckpt={runs / 'tiny' / 'ae'}"]) == 0
    return {"data": data, "vae": runs / "tiny" / "ae", "ckpt": runs / "tiny" / "sdm"}


@pytest.fixture
def write_sweep(tmp_path, tiny_model):
    """write_sweep(params=None, **fields) -> a sweep file on the tiny checkpoint (2x2 grid by default)."""
    return lambda params=None, **fields: sweep_file(tmp_path, tiny_model, params, **fields)
