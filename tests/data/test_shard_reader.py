"""Shard lists, record decoding and the skip-and-count behaviour of the reader, on real tar shards."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import math

import numpy as np
import pytest
import torch
import webdataset as wds

from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.data.reader import resolve_shards
from satdiffmoe.data.record import encode_scene, to_tensors
from satdiffmoe.errors import UserError


def _read_all(cfg, split="val"):
    dm = SatDataModule(cfg)
    batches = list(dm.eval_dataset(split))
    return dm, batches


def _keys(batches):
    return [key for batch in batches for key in batch["key"]]


def test_round_trip_of_every_field(tmp_path, scenes, write_split, data_config):
    write_split(tmp_path, scenes[:5], "val", per_shard=3)
    cfg = data_config(tmp_path, "data.eval_lr_policy=all", "data.num_lr=-1", "data.max_lr=6")
    _, batches = _read_all(cfg)
    rows = {key: (batch, i) for batch in batches for i, key in enumerate(batch["key"])}
    assert sorted(rows) == sorted(s.key for s in scenes[:5])
    for scene in scenes[:5]:
        batch, i = rows[scene.key]
        expected, n = to_tensors(scene), scene.num_lr
        hr_date = dt.date.fromisoformat(scene.meta["hr_time"])
        doy = [float((hr_date + dt.timedelta(days=int(d))).timetuple().tm_yday) for d in scene.meta["lr_dt"]]
        assert torch.equal(batch["hr"][i], expected.hr)
        assert torch.equal(batch["lr"][i, :n], expected.lr) and not batch["lr"][i, n:].any()
        assert torch.equal(batch["lr_mask"][i, :n], expected.lr_mask)
        assert batch["lr_valid"][i].tolist() == [True] * n + [False] * (6 - n)
        assert batch["dt"][i, :n].tolist() == scene.meta["lr_dt"]
        assert batch["lr_cloud"][i, :n].tolist() == pytest.approx(scene.meta["cloud_cover"])
        assert batch["lr_doy"][i, :n].tolist() == doy
        assert batch["gsd"][i].item() == 2.5 and torch.equal(batch["hr_mask"][i], torch.ones(32, 32))
    assert set(batches[0]) == {
        "hr",
        "lr",
        "lr_mask",
        "lr_valid",
        "dt",
        "lr_cloud",
        "lr_doy",
        "gsd",
        "hr_mask",
        "key",
    }


def test_unknown_times_hr_mask_and_missing_cloud_cover(tmp_path, scenes, write_split, data_config):
    scene = copy.deepcopy(scenes[0])
    scene.meta["lr_dt"][0] = None
    del scene.meta["lr_times"], scene.meta["cloud_cover"], scene.meta["gsd"]
    scene.hr_mask = np.zeros((32, 32), np.uint8)
    scene.hr_mask[:16] = 1
    write_split(tmp_path, [scene], "val", per_shard=4)
    batch = _read_all(data_config(tmp_path, "data.eval_lr_policy=all"))[1][0]
    assert math.isnan(batch["dt"][0, 0]) and batch["dt"][0, 1] == scene.meta["lr_dt"][1]
    assert torch.isnan(batch["lr_doy"][0, : scene.num_lr]).all() and math.isnan(batch["gsd"][0])
    expected_cloud = 1 - scene.lr_mask.reshape(scene.num_lr, -1).mean(1)
    assert batch["lr_cloud"][0, : scene.num_lr].tolist() == pytest.approx(expected_cloud.tolist())
    assert batch["hr_mask"][0].sum() == 16 * 32


def test_centre_crop_to_a_smaller_hr_size_keeps_lr_alignment(tmp_path, scenes, write_split, data_config):
    write_split(tmp_path, scenes[:1], "val", per_shard=4)
    batch = _read_all(data_config(tmp_path, "data.hr_size=16", "data.eval_lr_policy=all"))[1][0]
    expected = to_tensors(scenes[0])
    assert torch.equal(batch["hr"][0], expected.hr[:, 8:24, 8:24])
    assert torch.equal(batch["lr"][0, : scenes[0].num_lr], expected.lr[:, :, 2:6, 2:6])


def test_truncated_shard_is_skipped_and_counted(tmp_path, scenes, write_split, data_config):
    write_split(tmp_path, scenes[:8], "val", per_shard=4)
    damaged = tmp_path / "val-000001.tar"
    damaged.write_bytes(damaged.read_bytes()[: int(damaged.stat().st_size * 0.6)])
    dm, batches = _read_all(data_config(tmp_path))
    keys = _keys(batches)
    assert set(s.key for s in scenes[:4]) <= set(keys) and len(keys) < 8
    assert dm.skipped("val")["shard"] == 1  # one damaged shard, counted once


def _bad_samples(scene):
    good = encode_scene(scene)
    wrong_shape = dict(good, __key__="wrong-shape")
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((scene.num_lr, 3, 7, 7), np.uint8))
    wrong_shape["lr.npy"] = buffer.getvalue()
    nan_dt = dict(good, __key__="nan-dt")
    nan_dt["json"] = json.dumps(dict(scene.meta, lr_dt=[float("nan")] * scene.num_lr)).encode()
    missing = {k: v for k, v in good.items() if k != "lr_mask.npy"}
    missing["__key__"] = "missing-field"
    garbage = dict(good, __key__="garbage-npy")
    garbage["hr.npy"] = b"not an array"
    return [wrong_shape, nan_dt, missing, garbage]


def test_bad_records_are_skipped_and_counted(tmp_path, scenes, data_config):
    with wds.TarWriter(str(tmp_path / "val-000000.tar")) as tar:
        tar.write(encode_scene(copy.deepcopy(scenes[0])))
        for sample in _bad_samples(copy.deepcopy(scenes[1])):
            tar.write(sample)
        tar.write(encode_scene(copy.deepcopy(scenes[2])))
    dm, batches = _read_all(data_config(tmp_path))
    assert _keys(batches) == [scenes[0].key, scenes[2].key]
    assert dm.skipped("val") == {"shard": 0, "record": 4, "total": 4}


def test_shard_lists_from_folder_glob_brace_and_pipe(synth_root):
    folder = resolve_shards(None, str(synth_root), "train")
    assert [p.rsplit("/", 1)[1] for p in folder] == [
        "train-000000.tar",
        "train-000001.tar",
        "train-000002.tar",
    ]
    assert resolve_shards(str(synth_root / "train-*.tar"), "unused", "train") == folder
    assert resolve_shards(str(synth_root / "train-{000000..000002}.tar"), "unused", "train") == folder
    assert resolve_shards(f"pipe:cat {synth_root}/train-{{000000..000001}}.tar", "x", "train") == [
        f"pipe:cat {synth_root}/train-000000.tar",
        f"pipe:cat {synth_root}/train-000001.tar",
    ]


def test_pipe_urls_are_read(synth_root, data_config):
    cfg = data_config(synth_root, f"data.shards.val='pipe:cat {synth_root}/val-{{000000..000001}}.tar'")
    assert len(_keys(_read_all(cfg)[1])) == 6


@pytest.mark.parametrize(
    "spec, message",
    [
        (None, "no val shards"),  # empty folder
        ("{root}/val-*.tar", "no val shards match"),
        ("{root}/val-{{000000..000001}}.tar", "does not exist"),
    ],
)
def test_missing_shards_are_a_user_error_with_the_fix(tmp_path, data_config, spec, message):
    overrides = [] if spec is None else [f"data.shards.val='{spec.format(root=tmp_path)}'"]
    with pytest.raises(UserError, match=message) as info:
        SatDataModule(data_config(tmp_path, *overrides)).setup("validate")
    assert "satdiffmoe prepare synthetic --out" in str(info.value)


def test_missing_root_folder_is_a_user_error(tmp_path, data_config):
    with pytest.raises(UserError, match="does not exist; run `satdiffmoe prepare synthetic --out"):
        SatDataModule(data_config(tmp_path / "nowhere")).setup("fit")


def test_config_not_matching_the_records_fails_fast(synth_root, data_config):
    with pytest.raises(UserError, match="does not fit the config.*data.scale"):
        SatDataModule(data_config(synth_root, "data.scale=2")).setup("fit")
