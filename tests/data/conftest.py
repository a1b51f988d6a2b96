"""Shared fixtures for the data tests: small real shard sets written by the real generator."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from data_prep.cli import run as prepare
from data_prep.synthetic import SynthSatParams, make_scene
from satdiffmoe.config import load_config
from satdiffmoe.data.record import Scene
from satdiffmoe.data.shard_writer import ShardSetWriter

torch.set_num_threads(1)
HR_SIZE, SCALE = 32, 4


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """24 SynthSat scenes at 32 px in 4-scene shards: train 12 (3 shards), val 6 (2), test 6 (2)."""
    root = tmp_path_factory.mktemp("synthsat")
    prepare(
        [
            "synthetic",
            "--out",
            str(root),
            "--num-scenes",
            "24",
            "--hr-size",
            str(HR_SIZE),
            "--scale",
            str(SCALE),
            "--max-lr",
            "5",
            "--shard-size",
            "4",
            "--val-frac",
            "0.25",
            "--test-frac",
            "0.25",
            "--seed",
            "3",
        ]
    )
    return root


@pytest.fixture(scope="session")
def manifest(synth_root) -> dict:
    return json.loads((synth_root / "manifest.json").read_text())


@pytest.fixture(scope="session")
def scenes() -> list[Scene]:
    """Scenes kept in memory, for tests that write their own shards."""
    params = SynthSatParams(hr_size=HR_SIZE, scale=SCALE, max_lr=5, seed=11)
    return [make_scene(params, index) for index in range(12)]


@pytest.fixture(scope="session")
def write_split() -> Callable[..., Path]:
    """write_split(out, scenes, split, per_shard): real shards via ShardSetWriter."""

    def write(out: Path, scenes: list[Scene], split: str, per_shard: int) -> Path:
        with ShardSetWriter(out, source="test", max_count=per_shard) as writer:
            for scene in scenes:
                writer.write(copy.deepcopy(scene), split)
        return out

    return write


@pytest.fixture(scope="session")
def data_config() -> Callable:
    """data_config(root, "data.key=value", ...): a validated experiment config for 32-px test shards."""

    def make(root, *overrides: str):
        base = [
            f"data.root={root}",
            f"data.hr_size={HR_SIZE}",
            f"data.scale={SCALE}",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.shuffle_buffer=8",
            "data.epoch_length=8",
            "data.max_lr=5",
        ]
        return load_config(None, base + list(overrides))

    return make
