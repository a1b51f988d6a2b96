"""The regression baselines go through the same data pipeline and `satdiffmoe evaluate` command as SatDiffMoE."""

import json

import pytest
import torch
from omegaconf import OmegaConf
from regression_toys import REGRESSION_STAGES, regression_config, trained_checkpoint

from satdiffmoe.cli import main
from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.training.checkpoints import load_task


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
def test_evaluate_command_scores_a_trained_baseline(synthetic_shards, tmp_path, stage):
    ckpt = trained_checkpoint(stage, tmp_path)
    config = tmp_path / "eval.yaml"
    config.write_text(OmegaConf.to_yaml(regression_config(stage, run_root=str(tmp_path), **{
        "data.root": str(synthetic_shards), "data.max_lr": 4})))

    overrides = [f"ckpt={ckpt}", "data.num_lr=2", "eval.references=false", "eval.name=baseline",
                 "eval.metrics=[psnr,ssim,cpsnr,unc_spearman,ause]"]
    assert main(["evaluate", str(config), *overrides]) == 0

    summary = json.loads(next(tmp_path.rglob("eval/baseline.json")).read_text())
    assert summary["stage"] == stage and summary["num_scenes"] == 3 and summary["nfe"] == 1
    assert summary["params"]["trainable"] == summary["params"]["total"] > 0
    assert all(torch.isfinite(torch.tensor(summary["metrics"][m]["mean"])) for m in ("psnr", "ssim", "cpsnr"))
    for name in ("unc_spearman", "ause"):  # no uncertainty map: unavailable, with the reason
        assert summary["metrics"][name] == {"unavailable": "the method has no uncertainty map"}


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
def test_checkpoints_load_through_the_safe_loader_and_predict_the_same(tmp_path, stage):
    from baseline_toys import scene_batch

    ckpt = trained_checkpoint(stage, tmp_path)
    task = load_task(ckpt, expect_stage=stage)  # weights_only=True, networks rebuilt from stored configs
    again = load_task(ckpt, expect_stage=stage)
    batch = scene_batch(scenes=2, lrs=3)
    assert torch.equal(task.sample(batch, None, None).image, again.sample(batch, None, None).image)


def test_the_all_policy_gives_multi_frame_baselines_every_lr_of_a_scene(synthetic_shards):
    cfg = regression_config("highresnet", **{"data.root": str(synthetic_shards), "data.max_lr": 4,
                                             "data.batch_size": 4, "data.epoch_length": 4})
    datamodule = SatDataModule(cfg)
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    counts = batch["lr_valid"].sum(1)
    assert batch["lr"].shape[1] == 4 and counts.min() >= 2  # synthetic scenes have 2-4 LRs, all kept
