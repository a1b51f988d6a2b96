"""Fixtures of this folder: one small raw tree per source, built fresh in each test's tmp_path."""

from pathlib import Path

import pytest
from raw_trees import make_fmow_tree, make_probav_tree, make_stack_tree, make_worldstrat_tree


@pytest.fixture
def worldstrat_root(tmp_path: Path) -> Path:
    return make_worldstrat_tree(tmp_path)


@pytest.fixture
def fmow_root(tmp_path: Path) -> Path:
    return make_fmow_tree(tmp_path)


@pytest.fixture
def probav_root(tmp_path: Path) -> Path:
    return make_probav_tree(tmp_path)


@pytest.fixture
def stack_root(tmp_path: Path) -> Path:
    return make_stack_tree(tmp_path)
