"""Fixture files in the on-disk formats of docs/ARCHITECTURE.md, written with the real libraries.

* `runs_dir`: three training runs (SatDiffMoE, ControlNet, DiffusionSat) with known crossing points:
  val/psnr reaches 20 dB at step 200 (SatDiffMoE, 0.5 s/step), step 1000 (ControlNet, 0.25 s/step)
  and never (DiffusionSat, tops out at 10 dB).
* `grid_study`: a real Optuna study in a real SQLite file: fusion_every ∈ {1, 5, off} × nfe ∈ {10, 50}
  × seed ∈ {0, 1}, with psnr = 20 + nfe/10 + fusion bonus {1: 2, 5: 3, off: 0} + 0.5·seed, LPIPS = 10/psnr, FID
  unavailable, and 0.01 s per NFE per image.
* `write_eval`: writes one eval summary JSON.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from report_fixtures import add_grid_trials, write_convergence_runs, write_eval_summary


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    return write_convergence_runs(tmp_path / "runs")


@pytest.fixture
def write_eval(tmp_path: Path):
    def write(folder: str, name: str, method: str, psnr: float, **kwargs) -> Path:
        return write_eval_summary(tmp_path / folder, name, method, psnr, **kwargs)

    return write


@pytest.fixture(scope="module")
def grid_study(tmp_path_factory) -> Path:
    """A sweep folder holding study.db with one complete grid study named 'fusion' (read-only: copy to modify)."""
    sweep = tmp_path_factory.mktemp("sweep")
    study = optuna.create_study(study_name="fusion", storage=f"sqlite:///{sweep / 'study.db'}", direction="maximize")
    add_grid_trials(study)
    return sweep
