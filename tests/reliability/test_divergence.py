"""A diverged run (NaN/inf training loss) stops with one clear line instead of training on garbage,
on one process and on two DDP ranks (which must stop together: a rank stopping alone would leave the
other waiting in the gradient all-reduce until the timeout)."""

from __future__ import annotations

import pytest
from reliability_helpers import error_lines, run_cli, tiny_args

from satdiffmoe.cli import main

DIVERGE = ("stage=autoencoder", "train.max_steps=40", "train.lr=1e12", "train.log_every=1", "train.val_every=4")
MESSAGE = "the training loss is not finite at step"


def test_a_diverged_run_stops_with_one_line_a_sane_one_trains_on(tiny_runs, tmp_path, capsys):
    code = main(["train", *tiny_args(tmp_path, tiny_runs["data"], *DIVERGE, "train.lr=1e-3", "train.max_steps=4",
                                     run_id="good")])
    assert code == 0  # the same run with a sane learning rate trains to the end
    capsys.readouterr()
    code = main(["train", *tiny_args(tmp_path, tiny_runs["data"], *DIVERGE, run_id="bad")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(f"error: {MESSAGE}")


@pytest.mark.slow
def test_ddp_ranks_stop_together_on_a_diverged_loss(tiny_runs, tmp_path):
    result = run_cli(["train", *tiny_args(tmp_path, tiny_runs["data"], *DIVERGE, "train.devices=2",
                                          "train.strategy=ddp", run_id="ddp")])
    assert result.returncode == 2, result.stderr[-3000:]
    assert any(line.startswith(f"error: {MESSAGE}") for line in error_lines(result.stderr)), result.stderr[-3000:]
