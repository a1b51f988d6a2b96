"""Two-process CPU DDP (gloo): a regression baseline's validation metrics equal the single-process ones
(tests/reliability/ddp_validate.py runs the project's Trainer on the shards; 5 val scenes split 3 + 2)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from regression_toys import trained_checkpoint

REPO = Path(__file__).resolve().parents[2]
VALIDATE = REPO / "tests" / "reliability" / "ddp_validate.py"


def validate(devices: int, ckpt: Path, data: Path, tmp_path: Path, stage: str) -> dict:
    out = tmp_path / f"metrics{devices}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled",
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)]))
    result = subprocess.run([sys.executable, str(VALIDATE), str(ckpt), str(data), str(tmp_path / "runs"),
                             str(devices), str(out), stage], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=20 * 60, check=False)  # a hang guard only
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_two_process_validation_equals_one_process(synthetic_shards, tmp_path):
    ckpt = trained_checkpoint("highresnet", tmp_path)
    single = validate(1, ckpt, synthetic_shards, tmp_path, "highresnet")
    ddp = validate(2, ckpt, synthetic_shards, tmp_path, "highresnet")
    assert {"val/loss", "val/psnr", "val/ssim"} <= set(single)
    for name in ("val/loss", "val/psnr", "val/ssim"):
        assert ddp[name] == pytest.approx(single[name], rel=1e-5), name
