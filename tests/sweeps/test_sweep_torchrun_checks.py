"""What a sweep refuses under torchrun before it joins a process group (torchrun's environment is
simulated with RANK/WORLD_SIZE; the real 2-process run is tests/reliability/test_ddp_sweep.py)."""

from __future__ import annotations

import pytest

from satdiffmoe.cli import main


@pytest.fixture
def under_torchrun(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")


def test_an_evaluate_sweep_refuses_torchrun(under_torchrun, write_sweep, tmp_path, capsys):
    assert main(["sweep", str(write_sweep()), "--out", str(tmp_path / "out")]) == 2
    assert "does not run under torchrun; use --workers K" in capsys.readouterr().err


def test_a_training_sweep_needs_as_many_processes_as_devices(under_torchrun, write_sweep, tiny_model, tmp_path,
                                                            capsys):
    sweep = write_sweep(params={"train.lr": {"choices": [1.0e-3]}}, kind="train",
                        base_overrides=[f"data.root={tiny_model['data']}", "train.devices=2", "train.strategy=ddp"])
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    assert "torchrun started 3 processes but train.devices × train.num_nodes = 2" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_device_counts_lightning_rejects_are_refused_before_any_trial(write_sweep, tiny_model, tmp_path, capsys):
    sweep = write_sweep(params={"train.lr": {"choices": [1.0e-3]}}, kind="train",
                        base_overrides=[f"data.root={tiny_model['data']}", "train.accelerator=cpu", "train.devices=-1"])
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    assert "train.devices=-1: `devices` selected with `CPUAccelerator` should be an int > 0" in capsys.readouterr().err
