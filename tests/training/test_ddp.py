"""Two-process DDP on CPU (gloo) through Lightning's own launcher."""

import os
import subprocess
import sys
from pathlib import Path

import torch


def test_two_process_ddp_cpu_run_trains_and_checkpoints(tmp_path, trained_chain):
    here = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(here), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_MODE", None)
    result = subprocess.run([sys.executable, str(here / "ddp_fit.py"), str(tmp_path), str(trained_chain["autoencoder"])],
                            capture_output=True, text=True, env=env, check=False, timeout=20 * 60, cwd=tmp_path)  # a hang guard only
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WORLD_SIZE=2 GLOBAL_STEP=2" in result.stdout
    last = torch.load(tmp_path / "runs" / "experiment" / "ddp" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2 and last["hyper_parameters"]["stage"] == "prior"
