"""Fixtures for the sampler tests."""

import pytest
from sampling_toys import ToyDenoiser


@pytest.fixture
def toy() -> ToyDenoiser:
    return ToyDenoiser()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory):
    from sampling_toys import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_pretrained(tmp_path_factory):
    from sampling_toys import save_tiny_pretrained

    return save_tiny_pretrained(tmp_path_factory.mktemp("pretrained"))
