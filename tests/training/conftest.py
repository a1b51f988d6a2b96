"""Fixtures of the training tests; the plain helpers live in training_toys.py."""

from __future__ import annotations

import os

import pytest
import torch
from training_toys import FixedDataModule, tiny_batch, tiny_config


@pytest.fixture
def batch() -> dict:
    return tiny_batch()


@pytest.fixture(scope="session")
def trained_chain(tmp_path_factory):
    """Autoencoder -> prior checkpoints trained for a few steps on the tiny batch (shared by tests)."""
    from satdiffmoe.runs import RunDir
    from satdiffmoe.training.trainer import build_task, build_trainer

    saved_mode = os.environ.pop("WANDB_MODE", None)  # session fixture: no monkeypatch; see no_wandb_unless_asked
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("chain")
    paths = {}
    for stage, extra in (("autoencoder", []), ("prior", [f"init.vae_ckpt={root / 'runs/experiment/ae'}"])):
        cfg = tiny_config(root, f"stage={stage}", f"run_id={'ae' if stage == 'autoencoder' else 'prior'}", *extra)
        run = RunDir.create(cfg)
        task = build_task(cfg)
        build_trainer(cfg, run, *task.monitor()).fit(task, datamodule=FixedDataModule(tiny_batch()))
        paths[stage] = run.path
    torch.set_num_threads(threads)
    if saved_mode is not None:
        os.environ["WANDB_MODE"] = saved_mode
    return paths


@pytest.fixture(autouse=True)
def no_wandb_unless_asked(monkeypatch):
    """The project conftest forces WANDB_MODE=offline, which beats the config; these tests use the
    config's `logging.wandb.mode` (disabled in TINY) so only the W&B test starts a W&B run."""
    monkeypatch.delenv("WANDB_MODE", raising=False)

