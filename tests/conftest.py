"""Project-wide test set-up: GPU marker handling, quiet offline W&B, bounded CPU threads."""

import os
import tempfile

import pytest
import torch

# W&B must never reach the network in tests; each test that wants a run sets its own dir.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("WANDB_DISABLE_GIT", "true")
torch.set_num_threads(1)  # for session-scoped fixtures too, which run outside `one_thread`
# The CLI's thread policy (satdiffmoe/threads.py) would otherwise re-choose the count in every in-process
# and subprocess command; tests/test_threads.py exercises the automatic choice itself.
os.environ.setdefault("SATDIFFMOE_THREADS", "1")
# The content-addressed cache (satdiffmoe/cache.py) of this test session, not the user's ~/.cache.
os.environ.setdefault("SATDIFFMOE_CACHE", tempfile.mkdtemp(prefix="satdiffmoe-test-cache-"))


@pytest.fixture(autouse=True)
def one_thread():
    """The test models are tiny: one thread avoids thread-pool overhead and contention with the DDP
    tests, which start two processes on the 2-core CI machine (measured: 57 s vs 1.3 s for one
    baseline test with two threads on a loaded machine). Reset per test in case a test changes it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (run on the lent GPU machine: pytest -m gpu)")
    for item in items:
        if item.get_closest_marker("gpu"):  # the marker, not the keyword: tests/gpu/ also holds CPU checks
            item.add_marker(skip)
