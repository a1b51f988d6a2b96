"""`satdiffmoe evaluate` and the Evaluator on real shards, a real tiny checkpoint and real references."""

from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf
from sampling_toys import TINY_MODEL

from satdiffmoe.cli import main
from satdiffmoe.config import load_config, with_overrides
from satdiffmoe.data.record import Scene
from satdiffmoe.data.shard_writer import ShardSetWriter
from satdiffmoe.evaluation import Evaluator, aggregate
from satdiffmoe.evaluation.catalog import METRICS

SCENES = 3


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    with ShardSetWriter(root, source="test") as writer:
        for i in range(SCENES):
            hr = rng.integers(0, 255, size=(3, 16, 16)).astype(np.uint8)
            lr = hr.reshape(3, 4, 4, 4, 4).mean((2, 4)).astype(np.uint8)[None].repeat(3, 0)
            meta = {"scale": 4, "bands": ["r", "g", "b"], "value_max": 255, "lr_dt": [-20.0, 5.0, None]}
            writer.write(Scene(f"s{i}", hr, lr, np.ones((3, 4, 4), np.uint8), meta), split="test")
    return root


@pytest.fixture
def own_ckpt(tiny_ckpt, tmp_path):
    """A copy of the tiny checkpoint's run folder: its eval/ starts empty."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_ckpt[0].parent.parent, run, ignore=shutil.ignore_patterns("eval"))
    return run / "checkpoints" / tiny_ckpt[0].name


def tiny_cfg(shards, tmp_path, *extra):
    return load_config(None, TINY_MODEL + [f"data.root={shards}", f"run_root={tmp_path}", "eval.grid_scenes=2",
                                           "data.num_lr=2", *extra])


def test_aggregate_uses_the_student_t_interval():
    summary = aggregate([1.0, 2.0, 3.0, 4.0])
    assert summary["mean"] == 2.5 and summary["n"] == 4
    # t_{0.975, 3} = 3.182, sem = 1.291 / 2
    assert summary["ci95"] == pytest.approx(3.182446 * np.std([1, 2, 3, 4], ddof=1) / 2, rel=1e-5)
    assert aggregate([float("inf")]) == {"unavailable": "no finite values"}


def test_evaluator_caches_scenes_across_sampler_settings(shards, tmp_path, tiny_ckpt):
    from satdiffmoe.training.checkpoints import load_task

    cfg = tiny_cfg(shards, tmp_path, "eval.metrics=[psnr,cpsnr,lr_psnr,swd,lpips,fid]")
    evaluator, task = Evaluator(cfg), load_task(tiny_ckpt[0])
    first = evaluator.run(task, cfg)
    scenes = evaluator.scenes(cfg)
    second = evaluator.run(task, with_overrides(cfg, {"sampler.fusion_every": None, "sampler.nfe": 2}))
    assert evaluator.scenes(cfg) is scenes and len(evaluator._scenes) == 1
    assert first["num_scenes"] == SCENES and first["nfe"] == 3 and second["nfe"] == 2
    assert second["name"].startswith("nfe2_fuseoff_mean_n2_") and second["name"] != first["name"]
    assert first["metrics"]["psnr"]["n"] == SCENES and first["metrics"]["psnr"]["ci95"] > 0
    assert first["metrics"]["psnr"]["mean"] != second["metrics"]["psnr"]["mean"]
    # 16 px scenes: too small for AlexNet, so LPIPS says why; FID's Inception resizes to 299 and runs
    assert first["metrics"]["lpips"]["unavailable"].startswith("LPIPS (AlexNet) needs images of at least 31 px")
    assert first["metrics"]["fid"]["mean"] > 0 and first["metrics"]["fid"]["set_level"]
    assert first["metrics"]["swd"]["mean"] > 0


def test_references_run_through_the_same_evaluator(shards, tmp_path):
    cfg = tiny_cfg(shards, tmp_path, "eval.metrics=[psnr,lr_psnr]")
    result = Evaluator(cfg).evaluate("mean_bicubic", cfg)
    assert result.summary["method"] == "mean_bicubic" and result.summary["nfe"] == 0
    assert len(result.rows) == SCENES and result.summary["metrics"]["lr_psnr"]["mean"] > 25


def test_evaluate_command_writes_json_jsonl_grid_and_references(shards, tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    config = tmp_path / "exp.yaml"
    config.write_text(OmegaConf.to_yaml(OmegaConf.from_dotlist(TINY_MODEL[:4])))
    code = main(["evaluate", str(config), f"ckpt={ckpt}", f"data.root={shards}", "data.num_lr=2",
                 "eval.seeds=[0,1]", "sampler.nfe=2", "sampler.uncertainty=latent",
                 *[o for o in TINY_MODEL[4:] if "nfe" not in o]])
    assert code == 0
    folder = ckpt.parent.parent / "eval"  # the checkpoint's own run folder
    # readable settings, then the hash of all of them (beside it: the free uncertainty maps' JSONs)
    (path,) = [p for p in folder.glob("nfe2_fuse1_mean_n2_*.json") if "_unc_" not in p.stem]
    summary = json.loads(path.read_text())
    assert path.stem == f"nfe2_fuse1_mean_n2_{summary['settings_hash']}"
    assert summary["seeds"] == [0, 1] and summary["num_scenes"] == SCENES
    assert summary["sampler"]["nfe"] == 2 and summary["wall_time_s"] > 0
    assert set(summary["metrics"]["psnr"]) == {"mean", "std", "ci95", "n"}
    assert summary["metrics"]["lpips"] == {"unavailable": summary["metrics"]["lpips"]["unavailable"]}
    # the default metric set runs end to end: every catalog metric is a number or says why not
    assert list(summary["metrics"]) == list(METRICS)
    assert summary["metrics"]["kid"]["std"] >= 0 and summary["metrics"]["sam"]["mean"] >= 0
    assert 0 <= summary["metrics"]["improvement"]["mean"] <= 100
    # the shards repeat one LR, so every branch agrees: a zero (latent) map ranks nothing, so neither its rank
    # correlation nor its sparsification area is a number
    assert summary["metrics"]["unc_spearman"]["unavailable"].startswith("undefined on every scene")
    assert summary["metrics"]["ause"]["unavailable"].startswith("undefined on every scene")
    rows = path.with_suffix(".jsonl").read_text().splitlines()
    assert len(rows) == 2 * SCENES and json.loads(rows[0])["num_lr"] == 2
    assert path.with_suffix(".png").stat().st_size > 1000
    assert (folder / "bicubic_nearest_n2.json").is_file() and (folder / "mean_bicubic_n2.json").is_file()
    # the autoencoder's own reconstruction of the HR: the cap of every latent method, scored the same way
    reconstruction = json.loads((folder / "autoencoder_reconstruction_n2.json").read_text())
    assert reconstruction["method"] == "autoencoder" and reconstruction["params"]["trainable"] == 0
    assert "unavailable" in reconstruction["metrics"]["ause"]
    # the free uncertainty maps, scored against this model's error on the same scenes and seeds; its
    # LRs are all alike, so the LR spread is constant too: both rank at random (AUSE), neither has a ρ
    for reference in ("unc_constant", "unc_lr_std"):
        free = json.loads((folder / f"{path.stem}_{reference}.json").read_text())
        assert free["method"] == reference and free["uncertainty_of"] == path.stem
        assert set(free["metrics"]) == {"unc_spearman", "ause"} and free["metrics"]["ause"]["mean"] > 0
        assert "unavailable" in free["metrics"]["unc_spearman"]
        assert len((folder / f"{path.stem}_{reference}.jsonl").read_text().splitlines()) == 2 * SCENES


def test_explicit_eval_name_is_not_overwritten_by_the_references(shards, tmp_path, own_ckpt):
    ckpt = own_ckpt
    config = tmp_path / "exp.yaml"
    config.write_text(OmegaConf.to_yaml(OmegaConf.from_dotlist(TINY_MODEL[:4])))
    code = main(["evaluate", str(config), f"ckpt={ckpt}", f"data.root={shards}", "data.num_lr=2",
                 "sampler.nfe=2", "eval.name=mine", "eval.references=true", "eval.metrics=[psnr]",  # names only
                 *[o for o in TINY_MODEL[4:] if "nfe" not in o]])
    assert code == 0
    folder = ckpt.parent.parent / "eval"
    assert json.loads((folder / "mine.json").read_text())["method"] != "mean_bicubic"
    assert json.loads((folder / "mean_bicubic_n2.json").read_text())["method"] == "mean_bicubic"


def test_evaluate_writes_under_an_explicit_run_root_and_records_the_dataset(shards, tmp_path, tiny_ckpt):
    ckpt, _ = tiny_ckpt
    config = tmp_path / "exp.yaml"
    config.write_text(OmegaConf.to_yaml(OmegaConf.from_dotlist(TINY_MODEL[:4])))
    elsewhere = tmp_path / "elsewhere"
    code = main(["evaluate", str(config), f"ckpt={ckpt}", f"data.root={shards}", "data.num_lr=2", "sampler.nfe=2",
                 f"run_root={elsewhere}", "eval.metrics=[psnr]", "eval.references=false",
                 *[o for o in TINY_MODEL[4:] if "nfe" not in o]])
    assert code == 0
    (path,) = elsewhere.glob("*/*/eval/nfe2_fuse1_mean_n2_*.json")  # <run_root>/<name>/<id>/eval/
    summary = json.loads(path.read_text())
    dataset = summary["dataset"]
    assert dataset["root"] == str(shards.resolve()) and dataset["split"] == "test"
    assert dataset["num_scenes"] == SCENES and dataset["source"] == "test" and len(dataset["manifest_id"]) == 12
    assert summary["nfe"] == 2 and summary["steps"] == 2  # no guidance: one network call per step


def test_run_name_counts_the_real_nfe():
    from satdiffmoe.evaluation.evaluator import default_name

    cfg = load_config(None, ["sampler.nfe=20", "sampler.fusion_every=5", "data.num_lr=3"])
    assert default_name("satdiffmoe", cfg).startswith("nfe20_fuse5_mean_n3_")
    assert default_name("satdiffmoe", cfg, nfe=40).startswith("nfe40_fuse5_mean_n3_")  # guidance: two calls per step


def test_default_names_hash_every_setting_and_regression_names_carry_no_sampler():
    from satdiffmoe.evaluation.evaluator import default_name, evaluation_settings

    cfg = load_config(None, ["sampler.nfe=4", "data.num_lr=4"])
    settings = evaluation_settings("satdiffmoe", cfg)
    assert settings["sampler"] == OmegaConf.to_container(cfg.sampler)  # the whole sampler, whatever keys it has
    names = {default_name("satdiffmoe", with_overrides(cfg, {key: value}))
             for key, value in [("sampler.late_fusion", True), ("sampler.guidance_scale", 3.0), ("eval.seeds", [1]),
                                ("sampler.eps_after_fusion", "keep"), ("sampler.fusion_drop", 0.25),
                                ("data.test_subset", 8), ("data.eval_lr_policy", "nearest_k")]}
    assert len(names | {default_name("satdiffmoe", cfg)}) == 8
    assert {name.rsplit("_", 1)[0] for name in names} <= {"nfe4_fuse5_mean_n4"}
    # a regression baseline samples nothing: its name and settings ignore the sampler
    regression = default_name("rams", cfg, uses_sampler=False)
    assert regression.startswith("rams_n4_") and "nfe" not in regression
    assert regression == default_name("rams", with_overrides(cfg, {"sampler.nfe": 9}), uses_sampler=False)
    assert evaluation_settings("rams", cfg, uses_sampler=False)["sampler"] is None


def evaluate_twice(shards, ckpt, first, second, capsys):
    """`evaluate` with overrides `first`, then `second`; (exit codes, the eval JSONs, the second's stderr)."""
    common = ["evaluate", None, f"ckpt={ckpt}", f"data.root={shards}", "data.num_lr=2", "sampler.nfe=2",
              "eval.metrics=[psnr]", *[o for o in TINY_MODEL[4:] if "nfe" not in o]]
    config = ckpt.parent.parent / "exp.yaml"
    config.write_text(OmegaConf.to_yaml(OmegaConf.from_dotlist(TINY_MODEL[:4])))
    common[1] = str(config)
    folder = ckpt.parent.parent / "eval"
    codes = [main(common + first)]
    capsys.readouterr()
    codes.append(main(common + second))
    jsons = {p.name: p.read_bytes() for p in folder.glob("*.json")}
    return codes, jsons, capsys.readouterr().err


def test_evaluations_that_differ_in_any_setting_never_overwrite_each_other(shards, own_ckpt, capsys):
    codes, jsons, _ = evaluate_twice(shards, own_ckpt, ["eval.references=false"],
                                     ["eval.references=false", "sampler.eps_after_fusion=keep"], capsys)
    assert codes == [0, 0] and len(jsons) == 2  # a5578c5 wrote both to nfe2_fuse1_mean_n2.json
    samplers = sorted(json.loads(data)["sampler"]["eps_after_fusion"] for data in jsons.values())
    assert samplers == ["keep", "rederive"]


def test_the_same_settings_refresh_their_own_result(shards, own_ckpt, capsys):
    codes, jsons, _ = evaluate_twice(shards, own_ckpt, ["eval.name=mine"], ["eval.name=mine"], capsys)
    assert codes == [0, 0] and {"mine.json", "mean_bicubic_n2.json", "bicubic_nearest_n2.json"} <= set(jsons)
    ids = {json.loads(data)["evaluation"]["id"] for data in jsons.values()}
    assert len(ids) == 1  # every file of the set was rewritten by the second evaluation


def test_an_explicit_eval_name_refuses_another_configs_result(shards, own_ckpt, capsys):
    folder = own_ckpt.parent.parent / "eval"
    codes, jsons, err = evaluate_twice(shards, own_ckpt, ["eval.name=mine", "eval.references=false"],
                                       ["eval.name=mine", "eval.references=false", "sampler.late_fusion=true"], capsys)
    assert codes == [0, 2] and list(jsons) == ["mine.json"]
    assert json.loads(jsons["mine.json"])["sampler"]["late_fusion"] is False  # the first result is kept
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: {folder / 'mine.json'} would be replaced") and "choose another eval.name" in line
    assert "sampler.late_fusion=true here, false in the file" in line


def test_a_reference_of_other_data_settings_is_not_replaced(shards, own_ckpt, capsys):
    codes, jsons, err = evaluate_twice(shards, own_ckpt, ["eval.name=a"], ["eval.name=b", "data.test_subset=2"], capsys)
    assert codes == [0, 2] and "b.json" not in jsons
    assert "mean_bicubic_n2.json would be replaced" in err or "bicubic_nearest_n2.json would be replaced" in err
    assert "data.test_subset=2 here, -1 in the file" in err and "eval.references=false" in err
