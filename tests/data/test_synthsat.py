"""SynthSat: the generator, its realism properties and `satdiffmoe prepare synthetic`."""

from __future__ import annotations

import datetime as dt
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from data_prep.cli import run as prepare
from data_prep.synthetic import SynthSatParams, assign_splits, generate, make_scene
from satdiffmoe.data.synthetic_scene import render, sample_landscape
from satdiffmoe.errors import UserError


def _same_scene(a, b) -> bool:
    return (
        a.key == b.key
        and np.array_equal(a.hr, b.hr)
        and np.array_equal(a.lr, b.lr)
        and np.array_equal(a.lr_mask, b.lr_mask)
        and a.meta == b.meta
    )


def test_generation_is_deterministic_per_seed_and_scene_index():
    params = SynthSatParams(hr_size=32, seed=5)
    assert _same_scene(make_scene(params, 7), make_scene(params, 7))
    assert not np.array_equal(make_scene(params, 7).hr, make_scene(params, 8).hr)
    assert not np.array_equal(make_scene(params, 7).hr, make_scene(SynthSatParams(hr_size=32, seed=6), 7).hr)


def test_output_does_not_depend_on_worker_count():
    params = SynthSatParams(hr_size=32, seed=1)
    single, pooled = list(generate(params, 6, workers=1)), list(generate(params, 6, workers=2))
    assert all(_same_scene(a, b) for a, b in zip(single, pooled)) and len(pooled) == 6


def test_scene_record_fields_are_consistent(scenes):
    for scene in scenes:
        n, meta = scene.num_lr, scene.meta
        assert scene.hr.dtype == np.uint8 and scene.hr.shape == (3, 32, 32)
        assert scene.lr.shape == (n, 3, 8, 8) and scene.lr_mask.shape == (n, 8, 8) and 2 <= n <= 5
        assert meta["value_max"] == 255 and meta["scale"] == 4 and meta["bands"] == ["red", "green", "blue"]
        hr_date = dt.date.fromisoformat(meta["hr_time"])
        days = [(dt.date.fromisoformat(t) - hr_date).days for t in meta["lr_times"]]
        assert days == meta["lr_dt"] and all(abs(d) <= 730 for d in days)
        assert meta["cloud_cover"] == pytest.approx(1 - scene.lr_mask.reshape(n, -1).mean(1), abs=1e-4)


def test_scenes_are_learnable_not_noise(scenes):
    # clear structure: neighbouring HR pixels are strongly correlated, and images use the value range
    hr = np.stack([s.hr for s in scenes]).astype(np.float64)
    left, right = hr[..., :-1].ravel(), hr[..., 1:].ravel()
    assert np.corrcoef(left, right)[0, 1] > 0.6
    assert hr.std(axis=(2, 3)).mean() > 10


def test_fusion_has_something_to_gain(scenes):
    """Mean of cloud-masked bicubic LRs beats the bicubic of the single nearest-in-time LR (PSNR)."""

    def psnr(a, b):
        return float(10 * torch.log10(4 / ((a - b) ** 2).mean()))

    fused, nearest = [], []
    for scene in scenes:
        hr = torch.from_numpy(scene.hr).float() / 127.5 - 1
        lr = torch.from_numpy(scene.lr).float() / 127.5 - 1
        up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        mask = F.interpolate(torch.from_numpy(scene.lr_mask).float()[:, None], scale_factor=4, mode="nearest")
        weight = mask.sum(0)
        mean = torch.where(weight > 0, (up * mask).sum(0) / weight.clamp(min=1), up.mean(0))
        fused.append(psnr(mean, hr))
        nearest.append(psnr(up[int(np.argmin(np.abs(scene.meta["lr_dt"])))], hr))
    assert np.mean(fused) > np.mean(nearest) + 1.0  # measured: ~+4 dB


def test_lr_images_are_degraded_copies_not_the_hr(scenes):
    for scene in scenes[:4]:
        down = scene.hr.astype(np.float64).reshape(3, 8, 4, 8, 4).mean(axis=(2, 4))
        assert all(np.abs(lr.astype(np.float64) - down).mean() > 1.0 for lr in scene.lr)


def test_change_grows_with_time_difference():
    """Δt is informative: a scene changes more between days 0 and ±2 years than 0 and ±1 year."""
    changed = {365: [], 730: []}
    for index in range(30):
        land = sample_landscape(np.random.default_rng(index), 32, hr_doy=100.0, day_range=730.0)
        today = render(land, 0.0)
        for days in changed:  # whole years: the same season, so only discrete changes remain
            changed[days].append(
                np.mean([np.abs(render(land, s * days) - today).max(0) > 0.05 for s in (-1, 1)])
            )
    assert np.mean(changed[730]) > np.mean(changed[365]) > 0.0


def test_splits_have_exact_counts():
    splits = assign_splits(40, 0.1, 0.25, seed=0)
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (26, 4, 10)
    assert splits == assign_splits(40, 0.1, 0.25, seed=0)
    with pytest.raises(UserError, match="too few"):
        assign_splits(2, 0.4, 0.4, seed=0)


def test_prepare_synthetic_writes_shards_and_manifest(synth_root, manifest):
    assert manifest["source"] == "synthetic" and manifest["counts"] == {"train": 12, "val": 6, "test": 6}
    assert manifest["shards"]["train"] == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    assert len(manifest["stats"]["hr_mean"]) == 3 and all(0 < m < 1 for m in manifest["stats"]["hr_mean"])
    assert manifest["config"]["hr_size"] == 32 and manifest["skipped"]["count"] == 0
    with tarfile.open(synth_root / "val-000000.tar") as tar:
        names = tar.getnames()
    assert {n.split(".", 1)[1] for n in names} == {"hr.npy", "lr.npy", "lr_mask.npy", "json"}


def test_prepare_help_lists_source_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        prepare(["synthetic", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--num-scenes" in help_text and "--shard-size" in help_text and "--dt-range-days" in help_text


def test_unknown_source_names_the_known_ones():
    with pytest.raises(UserError, match="known sources: synthetic"):
        prepare(["landsat9", "--out", "x"])


def test_bad_generator_options_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="--scale 3 must divide --hr-size 32"):
        prepare(["synthetic", "--out", str(tmp_path), "--hr-size", "32", "--scale", "3"])
