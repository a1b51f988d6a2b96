"""Tiny configs and trained checkpoints for the regression-baseline tests (16 px HR, ×4)."""

from pathlib import Path

import lightning.pytorch as pl
import torch
from baseline_toys import HR, SCALE, scene_batch

REGRESSION_STAGES = ["highresnet", "rams", "srcnn"]
LR_POLICY = {"highresnet": "all", "rams": "all", "srcnn": "pair"}


def regression_config(stage: str, **overrides):
    from satdiffmoe.config import config_from_dict, with_overrides

    cfg = config_from_dict({"stage": stage, "name": f"test-{stage}"})
    settings = {"data.hr_size": HR, "data.scale": SCALE, "data.channels": 3, "data.train_lr_policy": LR_POLICY[stage],
                "model.regression.features": 8, "model.regression.blocks": 1, "model.regression.frames": 4,
                "model.regression.attention_reduction": 4, "model.regression.max_shift": 1,
                "train.warmup_steps": 0, "train.lr": 3e-3, "train.ema_decay": 0.0, "train.val_lpips": False}
    settings.update(overrides)
    return with_overrides(cfg, settings)


def fit(task, batch: dict, steps: int) -> None:
    """`steps` optimizer steps on one fixed batch, with the task's own optimizer and schedule."""
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * steps, batch_size=None))
    return trainer


def trained_checkpoint(stage: str, folder: Path, steps: int = 2, **overrides) -> Path:
    """A checkpoint of `stage` after a few steps on a toy batch, saved by Lightning."""
    torch.manual_seed(0)
    from satdiffmoe.training import task_class

    task = task_class(stage)(regression_config(stage, **overrides))
    trainer = fit(task, scene_batch(scenes=4, lrs=3, valid_lrs=[1, 2, 3, 3]), steps)
    path = Path(folder) / f"{stage}.ckpt"
    trainer.save_checkpoint(path)
    return path
