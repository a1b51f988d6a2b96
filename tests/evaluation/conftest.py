"""Evaluation fixtures: the tiny real checkpoint from tests/sampling and a fixed-scene test datamodule."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "sampling"))  # sampling_toys: shared tiny checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from sampling_toys import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"))
