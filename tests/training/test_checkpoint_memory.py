"""Reading a checkpoint maps it instead of loading it: the optimizer moments and the EMA copy a later
stage never touches stay on disk.

At the paper's width (SD 2.1-base, full fine-tuning) a Lightning checkpoint is 14 GB, of which the
weights are 3.8; the conditional stages read the prior's checkpoint for its weights only, and a full
read pushed their peak RSS to 17.6 GB for a 5M-parameter LoRA run (bench/paper_smoke.py, BENCHMARKS.md).
"""

from __future__ import annotations

import subprocess
import sys

import torch

from satdiffmoe.training.checkpoints import _read

UNUSED_MB = 512
MEASURE = r"""
import resource, sys
from satdiffmoe.training.checkpoints import _read
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
checkpoint = _read(sys.argv[1])
total = float(checkpoint["state_dict"]["weight"].sum())   # the weights are read ...
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, total)   # ... the rest is not
"""


def test_unused_entries_of_a_checkpoint_are_not_read_into_memory(tmp_path):
    path = tmp_path / "big.ckpt"
    torch.save({"state_dict": {"weight": torch.ones(1000)},
                "optimizer_states": [{"exp_avg": torch.zeros(UNUSED_MB * 2**20 // 4)}]}, path)
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True,
                         check=True, timeout=600).stdout.split()
    grown_mb, total = int(out[0]) / 1024, float(out[1])
    assert total == 1000.0
    assert grown_mb < UNUSED_MB / 4, f"reading the checkpoint grew the process by {grown_mb:.0f} MB"


def test_a_checkpoint_in_the_legacy_format_still_loads(tmp_path):
    """mmap needs torch's zip format; a checkpoint saved without it is read the old way."""
    path = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": {"weight": torch.arange(5.0)}}, path, _use_new_zipfile_serialization=False)
    assert torch.equal(_read(path)["state_dict"]["weight"], torch.arange(5.0))
