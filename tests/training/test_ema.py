"""The EMA averages the trainable network only, and resumes checkpoints of Lightning's whole-module EMA."""

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging, ModelCheckpoint
from training_toys import FixedDataModule, tiny_batch, tiny_config

from satdiffmoe.training.callbacks import TrainableEMA
from satdiffmoe.training.trainer import build_task

DECAY = 0.5  # large steps, so every update is visible


@pytest.fixture(scope="module")
def vae_folder(tmp_path_factory):
    from diffusers import AutoencoderKL

    root = tmp_path_factory.mktemp("vae")
    torch.manual_seed(0)
    AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
                  latent_channels=4, norm_num_groups=4).save_pretrained(root)
    return root


def fit(tmp_path, vae_folder, callback, steps, ckpt_path=None):
    """Train the tiny prior `steps` steps; a checkpoint every 2 steps."""
    torch.manual_seed(0)
    task = build_task(tiny_config(tmp_path, "stage=prior", f"model.vae.pretrained={vae_folder}"))
    every_two = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="{step}", every_n_train_steps=2, save_top_k=-1)
    trainer = pl.Trainer(max_steps=steps, callbacks=[callback, every_two], logger=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(task, FixedDataModule(tiny_batch(), steps_per_epoch=10), ckpt_path=ckpt_path)
    return task


def test_only_trainable_parameters_are_averaged(tmp_path, vae_folder):
    ema = TrainableEMA(DECAY)
    task = fit(tmp_path, vae_folder, ema, steps=2)
    assert ema.names == [name for name, p in task.named_parameters() if p.requires_grad]
    assert ema.names and not any(name.startswith("vae.") for name in ema.names)
    checkpoint = torch.load(tmp_path / "ckpt" / "step=2.ckpt", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert averaged.keys() == raw.keys()  # the whole module, as Lightning's layout
    assert all(torch.equal(averaged[k], raw[k]) for k in raw if k.startswith("vae."))
    assert any(not torch.equal(averaged[k], raw[k]) for k in ema.names)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 2


def test_a_checkpoint_of_lightnings_ema_resumes_with_the_same_average(tmp_path, vae_folder):
    # 4 steps under Lightning's EMAWeightAveraging = its step-2 checkpoint + 2 steps under TrainableEMA
    reference = fit(tmp_path / "old", vae_folder, EMAWeightAveraging(decay=DECAY), steps=4)
    resumed = fit(tmp_path / "new", vae_folder, TrainableEMA(DECAY), steps=4,
                  ckpt_path=tmp_path / "old" / "ckpt" / "step=2.ckpt")
    # at the end of training both callbacks copy the average into the module
    expected, actual = reference.state_dict(), resumed.state_dict()
    for name, value in expected.items():
        torch.testing.assert_close(actual[name], value, atol=1e-6, rtol=1e-5, msg=name)


def test_last_checkpoint_written_at_the_end_of_training_keeps_the_raw_weights(tmp_path, vae_folder):
    """No validation or epoch end before `max_steps`: ModelCheckpoint writes `last.ckpt` in its own
    `on_train_end`, after the EMA has handed the module its average (the CI failure of stop 25)."""
    torch.manual_seed(0)
    ema = TrainableEMA(DECAY)
    task = build_task(tiny_config(tmp_path, "stage=prior", f"model.vae.pretrained={vae_folder}"))
    last_only = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=0, save_last=True)  # saved in on_train_end only
    trainer = pl.Trainer(max_steps=3, callbacks=[ema, last_only], logger=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu", default_root_dir=tmp_path)
    trainer.fit(task, FixedDataModule(tiny_batch(), steps_per_epoch=10))
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", weights_only=False)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert checkpoint["global_step"] == 3 and int(checkpoint["averaging_state"]["n_averaged"]) == 3
    assert any(not torch.equal(averaged[k], raw[k]) for k in ema.names)
    # the module leaves `fit` with the average, the raw weights are the ones a resume trains on
    live = task.state_dict()
    assert all(torch.equal(live[k], averaged[k]) for k in averaged)
    assert all(torch.equal(raw[k], value) for k, value in zip(ema.names, ema.average))
