"""bf16 training on CUDA through Lightning, eager and with every optimisation switch on; the DDP config."""

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy
from torch.utils.data import DataLoader

from satdiffmoe.runs import RunDir
from satdiffmoe.training.trainer import build_task, build_trainer

TUNED = ["train.channels_last=true", "train.fused_adamw=true", "train.compile=true", "train.matmul_precision=high"]


def repeated(batch: dict, steps: int) -> DataLoader:
    return DataLoader([batch] * steps, batch_size=None)


def fit(cfg, batch: dict) -> pl.Trainer:
    """The production trainer (training.trainer.build_trainer: callbacks, loggers, clipping) for train.max_steps."""
    task = build_task(cfg)
    trainer = build_trainer(cfg, RunDir.create(cfg), *task.monitor())
    trainer.fit(task, train_dataloaders=repeated(batch, cfg.train.max_steps))
    return trainer


@pytest.mark.gpu
@pytest.mark.parametrize("stage", ["satdiffmoe", "controlnet", "diffusionsat"])
@pytest.mark.parametrize("switches", [[], TUNED], ids=["eager", "tuned"])
def test_bf16_training_step_runs_with_finite_loss(stage, switches, tiny_cfg, make_batch):
    cfg = tiny_cfg(f"stage={stage}", "train.precision=bf16-mixed", "train.accelerator=gpu", *switches,
                   *(["data.train_lr_policy=all"] if stage == "diffusionsat" else []))
    branches = 1 if cfg.data.train_lr_policy == "pair" else cfg.model.controlnet.frames
    trainer = fit(cfg, make_batch(cfg, scenes=4, branches=branches, device="cpu"))
    assert trainer.global_step == cfg.train.max_steps
    assert trainer.strategy.root_device.type == "cuda"
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_fused_adamw_trains_and_clips_gradients_under_bf16(device, tiny_cfg, make_batch):
    """Lightning refuses to clip for a fused optimizer under mixed precision; bf16 needs no unscaling,
    so the task clips itself and train.fused_adamw works together with train.grad_clip."""
    cfg = tiny_cfg("stage=satdiffmoe", "train.precision=bf16-mixed", f"train.accelerator={device}",
                   "train.fused_adamw=true", "train.grad_clip=0.5", "train.max_steps=1")
    trainer = fit(cfg, make_batch(cfg, scenes=2, branches=1, device="cpu"))
    optimizer, task = trainer.optimizers[0], trainer.lightning_module
    assert optimizer.defaults["fused"] and trainer.global_step == 1
    params = task.trainable_parameters()
    for p in params:
        p.grad = torch.full_like(p, 10.0)
    task.configure_gradient_clipping(optimizer, gradient_clip_val=0.5)
    total_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    assert total_norm == pytest.approx(0.5, rel=1e-3)


@pytest.mark.gpu
def test_ddp_config_builds_and_trains_on_one_gpu(tiny_cfg, make_batch):
    cfg = tiny_cfg("stage=satdiffmoe", "train.precision=bf16-mixed", "train.accelerator=gpu",
                   "train.strategy=ddp", "train.devices=1")
    trainer = fit(cfg, make_batch(cfg, scenes=4, branches=1, device="cpu"))
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy.root_device == torch.device("cuda", 0)
    assert trainer.global_step == cfg.train.max_steps
