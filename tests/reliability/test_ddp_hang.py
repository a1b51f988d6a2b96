"""A 2-rank gloo DDP `train` in which rank 1 stays alive but stops joining collectives: rank 0 gives up
after train.ddp_timeout_s with one line, and rank 1 is stopped with it (never torch's 30 min wait).

`subprocess.run` returns only once every process holding the job's output has exited, so the test
also shows that no rank outlives the run. The timeout is a hang guard, not a speed check.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reliability_helpers import HANG_GUARD_S, cli_env, error_lines, tiny_args


def test_a_stuck_rank_stops_the_ddp_run_with_one_line(tiny_runs, tmp_path):
    stall = Path(__file__).with_name("stall_rank.py")  # rank 1 sleeps from step 1 on
    args = tiny_args(tmp_path, tiny_runs["data"], "stage=autoencoder", "train.devices=2", "train.strategy=ddp",
                     "train.ddp_timeout_s=30", "train.max_steps=1000", "train.val_every=1000", run_id="stuck")
    result = subprocess.run([sys.executable, str(stall), "train", *args], capture_output=True, text=True,
                            env=cli_env(), timeout=HANG_GUARD_S, check=False)
    # (30 s: the timeout also bounds how long rank 0 waits for rank 1 to start; on a loaded machine a
    # start beyond it ends the run the same way, with the same line)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in error_lines(result.stderr) if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert errors[0].startswith("error: DDP rank 0 stopped: another rank died, or did not join a collective within "
                                "train.ddp_timeout_s=30 s (")
