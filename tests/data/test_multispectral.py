"""Multispectral LR, RGB HR (issue 18): 13-band SynthSat LR records, their batches, the RGB view of the LR,
the config keys data.lr_channels / data.lr_rgb, and the evaluation's references on the LR's RGB bands."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds

from data_prep.cli import run as prepare
from data_prep.synthetic import SynthSatParams, make_scene
from satdiffmoe.config import load_config
from satdiffmoe.data.collate import random_batch
from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.data.lr_stack import lr_band_count, lr_rgb_view
from satdiffmoe.data.record import encode_scene
from satdiffmoe.errors import UserError
from satdiffmoe.evaluation.evaluator import Evaluator
from satdiffmoe.evaluation.references import bicubic_nearest, mean_bicubic
from satdiffmoe.evaluation.suite import MetricSuite

S2_RGB = [3, 2, 1]  # B4, B3, B2 of the 13 Sentinel-2 bands
MULTIBAND = ["data.lr_channels=13", "data.lr_rgb=[3,2,1]"]
CHEAP_METRICS = "eval.metrics=[psnr,ssim,cpsnr,lr_psnr,psnr_ratio,consistency_l1,consistency_sam,synthesis,improvement]"
# sha256 over the record bytes (key, hr.npy, lr.npy, lr_mask.npy, json) of scenes 0-3 of
# SynthSatParams(hr_size=32, max_lr=4, seed=3), computed with the generator before --lr-bands existed
DEFAULT_RECORDS_SHA256 = "92137bdd388c1f67a6c94bfa8dd7dfb3cb4fe7e05f6f3c4045c3aa681d0d4750"


def _prepare(out: Path, *extra: str) -> Path:
    assert prepare(["synthetic", "--out", str(out), "--num-scenes", "12", "--hr-size", "32", "--scale", "4",
                    "--max-lr", "4", "--shard-size", "4", "--val-frac", "0.25", "--test-frac", "0.25",
                    "--seed", "3", *extra]) == 0
    return out


@pytest.fixture(scope="module")
def rgb_root(tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory.mktemp("synthsat_rgb"))


@pytest.fixture(scope="module")
def ms_root(tmp_path_factory) -> Path:
    return _prepare(tmp_path_factory.mktemp("synthsat_ms"), "--lr-bands", "13")


def _config(root, *overrides):
    return load_config(None, [f"data.root={root}", "data.hr_size=32", "data.scale=4", "data.batch_size=4",
                              "data.eval_batch_size=4", "data.shuffle_buffer=4", "data.epoch_length=4",
                              "data.max_lr=4", "data.num_lr=-1", "data.eval_lr_policy=all", *overrides])


def _test_batches(cfg) -> list[dict]:
    return SatDataModule(cfg).scenes("test", limit=-1)


# ------------------------------------------------------------------------------------------ generator
def test_default_synthsat_records_are_byte_identical_to_the_rgb_only_generator():
    params = SynthSatParams(hr_size=32, scale=4, min_lr=2, max_lr=4, seed=3)
    digest = hashlib.sha256()
    for index in range(4):
        sample = encode_scene(make_scene(params, index))
        for key in ("__key__", "hr.npy", "lr.npy", "lr_mask.npy", "json"):
            value = sample[key]
            digest.update(value if isinstance(value, bytes) else value.encode())
    assert digest.hexdigest() == DEFAULT_RECORDS_SHA256


def test_thirteen_band_lr_holds_the_rgb_lr_in_bands_3_2_1_and_leaves_the_rest_of_the_record_alone():
    rgb = make_scene(SynthSatParams(hr_size=32, max_lr=4, seed=3), 2)
    multi = make_scene(SynthSatParams(hr_size=32, max_lr=4, seed=3, lr_bands=13), 2)
    assert rgb.lr.shape[1] == 3 and multi.lr.shape[1] == 13
    assert np.array_equal(multi.lr[:, S2_RGB], rgb.lr)
    assert np.array_equal(multi.hr, rgb.hr) and np.array_equal(multi.lr_mask, rgb.lr_mask)
    assert multi.meta.pop("lr_bands")[3] == "B4" and multi.meta == rgb.meta


def test_the_other_bands_are_deterministic_and_not_copies_of_the_rgb():
    params = SynthSatParams(hr_size=32, max_lr=4, seed=3, lr_bands=13)
    first, again = make_scene(params, 5), make_scene(params, 5)
    assert np.array_equal(first.lr, again.lr)
    nir, red = first.lr[:, 7].astype(int), first.lr[:, 3].astype(int)  # B8 vs B4
    assert np.abs(nir - red).mean() > 5


def test_manifest_names_the_lr_bands_and_the_lr_rgb_to_train_with(ms_root, rgb_root):
    multi = json.loads((ms_root / "manifest.json").read_text())["lr_bands"]
    assert multi["count"] == 13 and multi["names"][:4] == ["B1", "B2", "B3", "B4"] and multi["lr_rgb"] == S2_RGB
    rgb = json.loads((rgb_root / "manifest.json").read_text())["lr_bands"]
    assert rgb == {"names": ["red", "green", "blue"], "count": 3, "lr_rgb": None}


def test_lr_bands_other_than_3_or_13_are_refused():
    with pytest.raises(UserError, match="--lr-bands"):
        SynthSatParams(lr_bands=5).check()


# ---------------------------------------------------------------------------------------------- config
def test_lr_channels_without_lr_rgb_is_refused_with_one_line():
    with pytest.raises(UserError) as error:
        load_config(None, ["data.lr_channels=13"])
    assert "\n" not in str(error.value) and "data.lr_rgb" in str(error.value)


@pytest.mark.parametrize("lr_rgb", ["[3,2]", "[3,2,13]", "[-1,2,1]"])
def test_lr_rgb_needs_one_in_range_lr_band_per_hr_band(lr_rgb):
    with pytest.raises(UserError, match="data.lr_rgb"):
        load_config(None, ["data.lr_channels=13", f"data.lr_rgb={lr_rgb}"])


def test_same_bands_need_no_mapping_and_may_reorder():
    assert lr_band_count(load_config(None).data) == 3
    assert list(load_config(None, ["data.lr_rgb=[2,1,0]"]).data.lr_rgb) == [2, 1, 0]
    assert lr_band_count(load_config(None, MULTIBAND).data) == 13


# --------------------------------------------------------------------------------------------- batches
def test_batches_have_13_band_lr_and_3_band_hr(ms_root):
    cfg = _config(ms_root, *MULTIBAND)
    datamodule = SatDataModule(cfg)
    datamodule.setup("fit")
    train = next(iter(datamodule.train_dataloader()))
    assert train["lr"].shape == (4, 1, 13, 8, 8) and train["hr"].shape == (4, 3, 32, 32)
    test = _test_batches(cfg)[0]
    assert test["lr"].shape[0] == 3 and test["lr"].shape[2:] == (13, 8, 8) and test["hr"].shape == (3, 3, 32, 32)


def test_the_rgb_view_is_the_rgb_lr(ms_root, rgb_root):
    multi, rgb = _test_batches(_config(ms_root, *MULTIBAND))[0], _test_batches(_config(rgb_root))[0]
    assert multi["key"] == [k for k in rgb["key"]]
    view = lr_rgb_view(multi, S2_RGB)
    assert view["lr"].shape == rgb["lr"].shape and torch.equal(view["lr"], rgb["lr"])
    assert view["hr"] is multi["hr"] and multi["lr"].shape[2] == 13  # other keys shared, the batch untouched
    assert lr_rgb_view(rgb, None) is rgb


def test_random_batch_follows_lr_channels():
    assert random_batch(load_config(None, MULTIBAND), scenes=2, branches=3)["lr"].shape == (2, 3, 13, 16, 16)


# ----------------------------------------------------------------------------------- band mismatches
def test_shards_with_more_lr_bands_than_the_config_are_refused_naming_the_key(ms_root):
    with pytest.raises(UserError, match=r"data.lr_channels=13"):
        SatDataModule(_config(ms_root)).setup("test")


def test_a_later_record_with_other_lr_bands_is_a_counted_skip_with_its_reason(tmp_path, caplog):
    params = SynthSatParams(hr_size=32, max_lr=4, seed=3)
    good = [make_scene(SynthSatParams(hr_size=32, max_lr=4, seed=3, lr_bands=13), i) for i in (0, 2)]
    rgb_only = make_scene(params, 1)
    with wds.TarWriter(str(tmp_path / "test-000000.tar")) as tar:
        for scene in (good[0], rgb_only, good[1]):
            tar.write(encode_scene(copy.deepcopy(scene)))
    datamodule = SatDataModule(_config(tmp_path, *MULTIBAND))
    with caplog.at_level(logging.WARNING):
        batches = datamodule.scenes("test", limit=-1)
    assert [k for b in batches for k in b["key"]] == [good[0].key, good[1].key]
    assert datamodule.skipped("test") == {"shard": 0, "record": 1, "total": 1}
    assert "LR has 3 bands but the config expects 13" in caplog.text


def test_a_record_whose_lr_bands_differ_from_the_hr_without_naming_them_is_invalid():
    scene = make_scene(SynthSatParams(hr_size=32, max_lr=4, seed=3, lr_bands=13), 0)
    del scene.meta["lr_bands"]
    with pytest.raises(ValueError, match="meta.lr_bands"):
        encode_scene(scene)


# ------------------------------------------------------------------------------------------ evaluation
def test_references_on_the_rgb_view_equal_the_rgb_only_ones(ms_root, rgb_root):
    multi, rgb = _test_batches(_config(ms_root, *MULTIBAND))[0], _test_batches(_config(rgb_root))[0]
    for reference in (bicubic_nearest, mean_bicubic):
        assert torch.equal(reference(lr_rgb_view(multi, S2_RGB)), reference(rgb))


@pytest.mark.parametrize("method", ["mean_bicubic", "bicubic_nearest"])
def test_evaluate_scores_a_multiband_set_as_its_rgb_only_twin(ms_root, rgb_root, method):
    multi_cfg, rgb_cfg = _config(ms_root, *MULTIBAND, CHEAP_METRICS), _config(rgb_root, CHEAP_METRICS)
    multi, rgb = Evaluator(multi_cfg).evaluate(method, multi_cfg), Evaluator(rgb_cfg).evaluate(method, rgb_cfg)
    assert multi.summary["metrics"] == rgb.summary["metrics"]
    assert "unavailable" not in multi.summary["metrics"]["consistency_l1"]
    assert multi.rows == rgb.rows
    assert torch.equal(multi.grid["lr"], rgb.grid["lr"])  # the grid shows the LR's RGB bands


def test_the_metric_suite_refuses_an_lr_in_other_bands_than_the_output():
    cfg = load_config(None, MULTIBAND + ["eval.metrics=[lr_psnr]"])
    batch = random_batch(cfg, scenes=2, branches=2)
    suite = MetricSuite(cfg.eval)
    with pytest.raises(ValueError, match="lr_rgb_view"):
        suite.per_image(batch, batch["hr"], None, {})
    assert suite.per_image(lr_rgb_view(batch, cfg.data.lr_rgb), batch["hr"], None, {})["lr_psnr"].shape == (2,)


# --------------------------------------------------------------------------------------------- end to end
def test_prepare_train_evaluate_on_13_band_lr(tmp_path):
    """prepare synthetic --lr-bands 13 -> train satdiffmoe (model.conditioning=multiband) -> evaluate."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "sampling"))  # sampling_toys: the tiny pretrained folders
    from sampling_toys import TINY_MODEL, save_tiny_pretrained

    from satdiffmoe.cli import main

    data, runs = tmp_path / "data", tmp_path / "runs"
    assert main(["prepare", "synthetic", "--out", str(data), "--num-scenes", "12", "--hr-size", "16", "--scale", "4",
                 "--max-lr", "3", "--val-frac", "0.25", "--test-frac", "0.25", "--lr-bands", "13"]) == 0
    pretrained = save_tiny_pretrained(tmp_path / "pretrained")
    config = tmp_path / "exp.yaml"
    config.write_text("name: ms\n")
    common = [*TINY_MODEL, "model.conditioning=multiband", *MULTIBAND, f"data.root={data}", f"run_root={runs}",
              "data.num_lr=2", "data.batch_size=4", "data.epoch_length=8", "data.shuffle_buffer=4", "data.max_lr=3",
              "data.val_subset=2", "eval.metrics=[psnr,lr_psnr,consistency_l1,psnr_ratio]"]
    assert main(["train", str(config), "stage=satdiffmoe", "run_id=r1", f"model.vae.pretrained={pretrained / 'vae'}",
                 f"model.unet.pretrained={pretrained / 'unet'}", "train.max_steps=2", "train.val_every=2",
                 "train.warmup_steps=0", "train.val_nfe=2", "train.val_lpips=false", *common]) == 0
    assert main(["evaluate", str(config), f"ckpt={runs / 'ms' / 'r1'}", "sampler.nfe=2",
                 *[o for o in common if "nfe" not in o]]) == 0
    results = {p.stem: json.loads(p.read_text()) for p in runs.glob("ms/*/eval/*.json")}
    names = {name.removesuffix(f"_{result['settings_hash']}") for name, result in results.items()}
    assert {"nfe2_fuse1_mean_n2", "mean_bicubic_n2", "bicubic_nearest_n2"} <= names
    for result in results.values():
        assert result["num_scenes"] == 3 and "mean" in result["metrics"]["psnr"] and "mean" in result["metrics"]["lr_psnr"]
