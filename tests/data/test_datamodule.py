"""SatDataModule in one process: epochs, seeds, subsets, workers, policies and Lightning wiring."""

from __future__ import annotations

import copy
import json

import lightning as L
import pytest
import torch
import webdataset as wds

from satdiffmoe.data.collate import BATCH_KEYS, batch_bytes
from satdiffmoe.data.datamodule import SatDataModule, SkippedRecordsCallback
from satdiffmoe.data.record import encode_scene
from satdiffmoe.errors import UserError


def _keys(batches):
    return [key for batch in batches for key in batch["key"]]


def _val_keys_in_shard_order(root):
    keys = []
    for name in json.loads((root / "manifest.json").read_text())["shards"]["val"]:
        keys += [
            s["__key__"]
            for s in wds.DataPipeline(wds.SimpleShardList([str(root / name)]), wds.tarfile_to_samples())
        ]
    return keys


def test_training_epoch_has_a_fixed_number_of_single_lr_batches(synth_root, data_config):
    dm = SatDataModule(data_config(synth_root, "data.epoch_length=10"))
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(loader) == dm.train_batches_per_epoch == len(batches) == 3  # ceil(10 / 4)
    assert all(tuple(b) == BATCH_KEYS and b["hr"].shape == (4, 3, 32, 32) for b in batches)
    assert all(b["lr"].shape == (4, 1, 3, 8, 8) and b["lr_valid"].all() for b in batches)


def test_the_batch_memory_estimate_is_the_bytes_of_a_real_batch(synth_root, data_config):
    """`train` refuses a data.batch_size whose batches cannot fit by this estimate (commands/train.py)."""
    cfg = data_config(synth_root, "data.eval_lr_policy=first_k", "data.num_lr=2", "data.max_lr=5")
    batch = SatDataModule(cfg).scenes("test", limit=4)[0]
    real = sum(value.nbytes for value in batch.values() if isinstance(value, torch.Tensor))
    assert batch_bytes(cfg.data, batch["hr"].shape[0], 5) == pytest.approx(real, rel=0.05)


def test_training_stream_is_reproducible_from_the_config_seed(synth_root, data_config):
    def first_batch(seed):
        return next(iter(SatDataModule(data_config(synth_root, f"seed={seed}")).train_dataloader()))

    a, b, c = first_batch(0), first_batch(0), first_batch(1)
    assert a["key"] == b["key"] and torch.equal(a["lr"], b["lr"]) and torch.equal(a["hr"], b["hr"])
    assert a["key"] != c["key"] or not torch.equal(a["hr"], c["hr"])


def test_worker_epochs_have_the_same_length_and_new_samples(synth_root, data_config):
    dm = SatDataModule(data_config(synth_root, "data.num_workers=2", "data.epoch_length=16"))
    loader = dm.train_dataloader()
    first, second = list(loader), list(loader)
    assert len(first) == len(second) == len(loader) == 4  # 2 workers × ceil(16 / (4·2))
    assert _keys(first) != _keys(second)  # persistent workers advance their pass seeds


def test_validation_uses_the_same_first_k_scenes_for_any_worker_count(synth_root, data_config):
    expected = _val_keys_in_shard_order(synth_root)[:4]
    for workers in (0, 2):
        dm = SatDataModule(data_config(synth_root, "data.val_subset=4", f"data.num_workers={workers}"))
        assert sorted(_keys(dm.val_dataloader())) == sorted(expected)


def test_test_subset_minus_one_reads_the_whole_split_once(synth_root, data_config):
    for workers in (0, 2):
        dm = SatDataModule(data_config(synth_root, "data.test_subset=-1", f"data.num_workers={workers}"))
        keys = _keys(dm.test_dataloader())
        assert len(keys) == len(set(keys)) == 6


def test_skips_in_worker_processes_reach_the_main_process(tmp_path, scenes, data_config):
    for shard in range(2):
        with wds.TarWriter(str(tmp_path / f"val-{shard:06d}.tar")) as tar:
            for scene in scenes[shard * 3 : shard * 3 + 3]:
                tar.write(encode_scene(copy.deepcopy(scene)))
            tar.write({"__key__": f"broken-{shard}", "json": b"{}"})
    dm = SatDataModule(data_config(tmp_path, "data.num_workers=2"))
    assert len(_keys(dm.val_dataloader())) == 6
    assert dm.skipped("val") == {"shard": 0, "record": 2, "total": 2}


def test_eval_batches_are_padded_to_max_lr_and_policies_apply(synth_root, data_config):
    dm = SatDataModule(
        data_config(synth_root, "data.eval_lr_policy=nearest_k", "data.num_lr=2", "data.max_lr=5")
    )
    batches = dm.scenes("test", limit=-1)
    assert len(_keys(batches)) == 6 and all(b["lr"].shape[1] == 5 for b in batches)
    for batch in batches:
        valid = batch["lr_valid"]
        assert (valid.sum(1) == 2).all() and valid[:, :2].all()
        assert (batch["dt"][:, 0].abs() <= batch["dt"][:, 1].abs()).all()


def test_fixed_length_stack_for_diffusionsat(synth_root, data_config):
    dm = SatDataModule(
        data_config(synth_root, "data.eval_lr_policy=first_k", "data.num_lr=3", "data.max_lr=3")
    )
    batches = dm.scenes("val", limit=-1, batch_size=2)
    assert len(batches) == 3 and all(b["lr"].shape == (2, 3, 3, 8, 8) for b in batches)
    available = {
        key: int(n)
        for b in dm.scenes("val", limit=-1, policy="all", num_lr=-1)
        for key, n in zip(b["key"], b["lr_valid"].sum(1))
    }
    assert {key: int(n) for b in batches for key, n in zip(b["key"], b["lr_valid"].sum(1))} == {
        key: min(3, n) for key, n in available.items()
    }


def test_scenes_with_limit_materialise_the_first_scenes(synth_root, data_config):
    dm = SatDataModule(data_config(synth_root))
    assert _keys(dm.scenes("val", limit=3)) == _val_keys_in_shard_order(synth_root)[:3]


class _MeanModel(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return ((batch["hr"].mean() - self.weight) ** 2).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", ((batch["hr"].mean() - self.weight) ** 2).sum(), batch_size=len(batch["key"]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_lightning_trainer_runs_an_epoch_and_logs_skip_counts(synth_root, data_config, tmp_path):
    dm = SatDataModule(data_config(synth_root, "data.epoch_length=8"))
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[SkippedRecordsCallback()],
        default_root_dir=tmp_path,
    )
    trainer.fit(_MeanModel(), datamodule=dm)
    assert trainer.global_step == 2
    assert (
        trainer.callback_metrics["data/skipped_val"] == 0
        and trainer.callback_metrics["data/skipped_train"] == 0
    )
    assert "val/loss" in trainer.callback_metrics


def test_fewer_validation_records_than_ranks_fails_fast_instead_of_hanging(synth_root, data_config):
    dm = SatDataModule(data_config(synth_root, "data.val_subset=1"))
    urls = dm.shard_urls("val")
    dm._check_enough_records("val", urls, limit=1, world_size=1)  # one process: fine
    with pytest.raises(UserError, match=r"val split has 1 record\(s\) for 2 ranks"):
        dm._check_enough_records("val", urls, limit=1, world_size=2)
