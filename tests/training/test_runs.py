"""What a training run leaves behind: resumable checkpoints, metrics.jsonl, images, a W&B offline run."""

import json

import torch
from lightning.pytorch.callbacks import Callback
from training_toys import FixedDataModule, tiny_batch, tiny_config

from satdiffmoe.runs import RunDir, seed_everything
from satdiffmoe.training.checkpoints import resolve_checkpoint
from satdiffmoe.training.loggers import finish_wandb
from satdiffmoe.training.trainer import build_task, build_trainer


def fit(cfg, ckpt_path=None, monitor=None, callbacks=()):
    run = RunDir.create(cfg)
    seed_everything(cfg.seed)  # as `satdiffmoe train` does: new layers initialise identically
    task = build_task(cfg)
    trainer = build_trainer(cfg, run, *(monitor or task.monitor()), callbacks=callbacks)
    try:
        trainer.fit(task, datamodule=FixedDataModule(tiny_batch()), ckpt_path=ckpt_path)
    finally:
        finish_wandb(trainer.loggers)
    return run, task, trainer


def test_resuming_from_last_ckpt_reproduces_the_uninterrupted_run(tmp_path, trained_chain):
    common = ["stage=satdiffmoe", f"init.prior_ckpt={trained_chain['prior']}", "train.ema_decay=0.9",
              "model.cond_dropout=0.5"]
    _, straight, straight_trainer = fit(tiny_config(tmp_path, *common, "run_id=straight", "train.max_steps=4"))
    run, _, _ = fit(tiny_config(tmp_path, *common, "run_id=split", "train.max_steps=2"))
    _, resumed, resumed_trainer = fit(tiny_config(tmp_path, *common, "run_id=split", "train.max_steps=4",
                                                  "resume=true"), ckpt_path=str(run.last_ckpt))
    assert resumed_trainer.global_step == straight_trainer.global_step == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    last = torch.load(run.last_ckpt, weights_only=True)
    assert last["global_step"] == 4 and "current_model_state" in last  # EMA weights + raw weights


def test_a_run_writes_metrics_jsonl_images_and_top_k_checkpoints(tmp_path, trained_chain):
    run, _, _ = fit(tiny_config(tmp_path, "stage=prior", f"init.vae_ckpt={trained_chain['autoencoder']}",
                                "run_id=logs"))
    records = [json.loads(line) for line in run.metrics_log.read_text().splitlines()]
    keys = set().union(*records)
    assert {"step", "wall_time", "epoch", "train/loss", "train/lr", "train/samples_per_s",
            "val/loss", "val/psnr", "val/ssim", "params/trainable", "params/total"} <= keys
    assert all(isinstance(r["wall_time"], float) for r in records)
    walls = [r["wall_time"] for r in records]
    assert walls == sorted(walls)
    assert sorted(p.name for p in run.images.glob("*.png")) == ["val_samples_step000002.png",
                                                              "val_samples_step000004.png"]
    names = sorted(p.name for p in run.checkpoints.glob("*.ckpt"))
    assert "last.ckpt" in names and len(names) == 3  # last + train.ckpt_top_k=2


def test_training_creates_a_wandb_offline_run_in_the_run_folder(tmp_path, trained_chain, monkeypatch):
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run, _, _ = fit(tiny_config(tmp_path, "stage=autoencoder", "logging.wandb.mode=offline", "run_id=wb",
                                "train.max_steps=2"))
    offline = list((run.path / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("run-*.wandb"))  # the event log `wandb sync` uploads


class WorseningScore(Callback):
    """A validation metric that only gets worse: the first validation is the best there will be."""

    def __init__(self):
        self.score = 0.0

    def on_validation_epoch_end(self, trainer, pl_module):
        self.score -= 1.0
        pl_module.log("probe/score", self.score)


def test_last_ckpt_follows_every_validation_and_the_final_step_while_the_best_stays(tmp_path):
    """Lightning >= 2.6 writes `save_last` only when a top-k checkpoint is saved at the same step; a run
    whose validation stops improving must still resume from its latest validation, not its best, and
    the steps after the last validation are saved when training ends."""
    cfg = tiny_config(tmp_path, "stage=autoencoder", "train.max_steps=6", "train.ckpt_top_k=1", "run_id=worse")
    run, _, _ = fit(cfg, monitor=("probe/score", "max"), callbacks=[WorseningScore()])
    assert torch.load(run.last_ckpt, weights_only=True)["global_step"] == 6  # validations at 2, 4, 6
    best = resolve_checkpoint(run.path)
    assert best.name == "step000002.ckpt" and torch.load(best, weights_only=True)["global_step"] == 2
    assert sorted(p.name for p in run.checkpoints.glob("*.ckpt")) == ["last.ckpt", "step000002.ckpt"]

    cfg = tiny_config(tmp_path, "stage=autoencoder", "train.max_steps=7", "train.ema_decay=0.5", "run_id=odd")
    run, _, _ = fit(cfg)
    last = torch.load(run.last_ckpt, weights_only=True)
    assert last["global_step"] == 7 and int(last["averaging_state"]["n_averaged"]) == 7
    # written after the EMA handed the module its average: the raw weights are still kept beside it
    assert any(not torch.equal(last["state_dict"][k], last["current_model_state"][k]) for k in last["state_dict"])
