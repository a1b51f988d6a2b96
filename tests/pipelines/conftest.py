"""Fixtures for the pipeline tests: the sampling tests' tiny real checkpoint."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "sampling"))  # sampling_toys: shared tiny checkpoint


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from sampling_toys import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def exported(tiny_ckpt, tmp_path_factory):
    from satdiffmoe.cli import main

    folder = tmp_path_factory.mktemp("export") / "satdiffmoe"
    assert main(["export", str(tiny_ckpt[0]), "--out", str(folder)]) == 0
    return folder
