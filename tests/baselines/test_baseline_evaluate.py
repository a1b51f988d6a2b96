"""Both baselines go through the same `satdiffmoe evaluate` command as SatDiffMoE, on real shards."""

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from baseline_toys import scene_batch, task_config
from omegaconf import OmegaConf

from satdiffmoe.cli import main
from satdiffmoe.data.record import Scene
from satdiffmoe.data.shard_writer import ShardSetWriter
from satdiffmoe.training import task_class


@pytest.fixture(scope="module")
def test_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    rng = np.random.default_rng(0)
    with ShardSetWriter(root, source="test") as writer:
        for i in range(2):
            hr = rng.integers(0, 255, size=(3, 16, 16)).astype(np.uint8)
            lr = hr.reshape(3, 4, 4, 4, 4).mean((2, 4)).astype(np.uint8)[None].repeat(3, 0)
            meta = {"scale": 4, "bands": ["r", "g", "b"], "value_max": 255, "lr_dt": [-20.0, 5.0, None],
                    "gsd": 1.5, "cloud_cover": [0.1, 0.0, 0.3]}
            writer.write(Scene(f"s{i}", hr, lr, np.ones((3, 4, 4), np.uint8), meta), split="test")
    return root


@pytest.mark.parametrize("stage,extra", [("controlnet", []), ("controlnet", ["sampler.late_fusion=true"]),
                                         ("diffusionsat", [])])
def test_evaluate_command_scores_a_trained_baseline(pretrained_dirs, test_shards, tmp_path, stage, extra):
    cfg = task_config(pretrained_dirs, stage, **{"run_root": str(tmp_path), "data.root": str(test_shards)})
    task = task_class(stage)(cfg)
    trainer = pl.Trainer(max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([scene_batch()] * 2, batch_size=None))
    ckpt = tmp_path / f"{stage}.ckpt"
    trainer.save_checkpoint(ckpt)
    config = tmp_path / "eval.yaml"
    config.write_text(OmegaConf.to_yaml(cfg))

    overrides = [f"ckpt={ckpt}", "sampler.nfe=2", "data.num_lr=3", "eval.references=false",
                 "eval.metrics=[psnr,ssim]", "eval.name=baseline", *extra]
    assert main(["evaluate", str(config), *overrides]) == 0

    summary = json.loads(next(tmp_path.rglob("eval/baseline.json")).read_text())
    assert summary["stage"] == stage and summary["num_scenes"] == 2
    assert 0 < summary["params"]["trainable"] < summary["params"]["total"]
    assert np.isfinite(summary["metrics"]["psnr"]["mean"])
