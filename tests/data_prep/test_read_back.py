"""Every converter's shards stream through `SatDataModule` as the batches training and evaluation use."""

import math

import torch
from raw_trees import run_prepare

from satdiffmoe.config import config_from_dict
from satdiffmoe.data.datamodule import SatDataModule


def _batches(out, split, hr_size, scale, channels):
    cfg = config_from_dict({"data": {"root": str(out), "hr_size": hr_size, "scale": scale, "channels": channels,
                                     "eval_lr_policy": "all", "num_lr": -1, "max_lr": 4, "eval_batch_size": 8}})
    module = SatDataModule(cfg)
    batches = module.scenes(split, limit=-1)
    assert module.skipped(split) == {} or not any(module.skipped(split).values())
    return batches


def test_worldstrat_batches(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 8)
    (batch,) = _batches(out, "train", hr_size=32, scale=4, channels=3)
    assert batch["hr"].shape == (4, 3, 32, 32) and batch["lr"].shape == (4, 4, 3, 8, 8)
    # the release's _ps.tiff DN / 10000 and float reflectance, both in [-1, 1] as x · 2 − 1
    assert torch.allclose(batch["hr"][1, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]) * 2 - 1)
    assert torch.allclose(batch["lr"][0, 0, :, 7, 7], torch.tensor([0.05, 0.06, 0.5]) * 2 - 1, atol=1e-4)
    assert batch["dt"][0, :2].tolist() == [-9.0, 10.0] and batch["lr_valid"][0].tolist() == [True, True, False, False]
    assert batch["gsd"][0] == 2.5


def test_fmow_batches(fmow_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("fmow", "--root", fmow_root, "--out", out, "--hr-size", 32)
    (batch,) = _batches(out, "val", hr_size=32, scale=4, channels=3)
    assert batch["key"] == ["airport_7_0", "airport_7_1"]
    assert (batch["dt"][0, :3] < 0).tolist() == [True, False, False]  # one LR before the HR, two after
    assert abs(batch["lr"][0, 0, 0, 4, 4].item() - (152 / 255 * 2 - 1)) < 1e-6  # B4 1500 DN, 2σ stretch


def test_probav_batches_have_unknown_dt_and_hr_mask(probav_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("probav", "--root", probav_root, "--out", out, "--bands", "NIR", "--val-frac", 0, "--test-frac", 0)
    (batch,) = _batches(out, "train", hr_size=48, scale=3, channels=1)
    assert batch["hr"].shape == (4, 1, 48, 48)
    assert all(math.isnan(v) for v in batch["dt"][0, :3].tolist())
    assert batch["hr_mask"][0, :6].sum() == 0 and batch["hr_mask"][0, 6:].min() == 1
    assert batch["lr_mask"][0, 2, :, :8].sum() == 0  # QM002 masks 8 columns


def test_stack_batches(stack_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("stack", "--root", stack_root, "--out", out, "--value-max", 4095)
    (batch,) = _batches(out, "test", hr_size=32, scale=4, channels=2)
    assert batch["key"] == ["c"] and batch["dt"][0, :2].tolist() == [-10.0, 3.0]
    assert batch["lr"][0, 0, 0].max().item() == 1.0  # 4500 clipped to value_max 4095
