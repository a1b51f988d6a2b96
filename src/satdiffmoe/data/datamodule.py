"""`SatDataModule`: streaming WebDataset shards into batches for training and evaluation.

    dm = SatDataModule(cfg)                 # cfg: experiment config (uses cfg.data and cfg.seed)
    dm.setup("fit"); batch = next(iter(dm.train_dataloader()))
    cached = dm.scenes("test", limit=32)    # list of eval batches, read in this process

Train: resampled shards (with replacement) and a fixed epoch of `data.epoch_length` samples per
rank, so every rank runs the same number of steps however uneven the shards are (webdataset under
DDP otherwise hangs the rank that runs out first); shuffle buffer and augmentation seeded from
(cfg.seed, rank, worker, pass); LRs by `data.train_lr_policy` (`pair` = one LR per example).
Val/test: each record exactly once over all ranks × workers (`reader.ExactlyOnceSplit`), LRs by
`data.eval_lr_policy` with `data.num_lr`, padded to `data.max_lr` slots. A DiffusionSat-style
fixed T-frame stack is `eval_lr_policy=first_k, num_lr=T, max_lr=T`.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader

from ..errors import UserError
from .collate import collate_scenes
from .reader import (
    ExactlyOnceSplit,
    SeededMap,
    SeededShuffle,
    SkipCounter,
    check_first_record,
    decode_sample,
    process_rank,
    reader_seed,
    resolve_shards,
)
from .transforms import random_dihedral, select_lrs

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}


class SatDataModule(L.LightningDataModule):
    """Train/val/test loaders over the shards named by `cfg.data`, yielding docs/ARCHITECTURE.md batches."""

    def __init__(self, cfg):
        super().__init__()
        self.data = cfg.data
        self.seed = int(cfg.seed)
        self.skip_counters = {split: SkipCounter(split, self.data.max_consecutive_skips) for split in SPLITS}
        self._urls: dict[str, list[str]] = {}

    # ---- shards --------------------------------------------------------------------------------
    def shard_urls(self, split: str) -> list[str]:
        """Resolved shard list of a split (UserError when missing or not matching the config)."""
        if split not in self._urls:
            urls = resolve_shards(self.data.shards[split], self.data.root, split)
            check_first_record(urls[0], self._decode)
            self._urls[split] = urls
            log.info("%s: %d shard(s) from %s", split, len(urls), self.data.shards[split] or self.data.root)
        return self._urls[split]

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS) if stage else SPLITS:
            self.shard_urls(split)

    def skipped(self, split: str) -> dict[str, int]:
        """Records skipped so far while reading `split` on this rank (all its workers)."""
        return self.skip_counters[split].counts()

    def _decode(self, raw: dict[str, Any]) -> dict[str, Any]:
        return decode_sample(raw, self.data.hr_size, self.data.scale, self.data.channels, self.data.lr_channels)

    # ---- training ------------------------------------------------------------------------------
    @property
    def _readers_per_rank(self) -> int:
        return max(1, self.data.num_workers)

    @property
    def train_batches_per_epoch(self) -> int:
        """Batches per rank per epoch: data.epoch_length samples, rounded up to whole batches per worker."""
        per_worker = math.ceil(self.data.epoch_length / (self.data.batch_size * self._readers_per_rank))
        return per_worker * self._readers_per_rank

    def _train_transform(self, sample: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        sample = select_lrs(sample, self.data.train_lr_policy, self.data.num_lr, rng)
        return random_dihedral(sample, rng) if self.data.augment else sample

    def train_dataset(self) -> wds.DataPipeline:
        counter = self.skip_counters["train"]
        pad_to = None if self.data.train_lr_policy == "pair" else self.data.max_lr
        rank, _ = process_rank()
        pipeline = wds.DataPipeline(
            # deterministic: shard order from (cfg.seed, rank, worker, epoch), not from time and pid
            wds.ResampledShards(
                self.shard_urls("train"),
                seed=self.seed,
                deterministic=True,
                worker_seed=partial(reader_seed, rank),
            ),
            counter.track_shards,
            wds.tarfile_to_samples(handler=counter.shard_handler),
            SeededShuffle(self.data.shuffle_buffer, self.seed, rank),
            wds.map(self._decode, handler=counter.record_handler),
            counter.good,
            SeededMap(self._train_transform, self.seed + 1, rank),
            wds.batched(
                self.data.batch_size, collation_fn=partial(collate_scenes, pad_to=pad_to), partial=False
            ),
        )
        # with_epoch counts per worker: each of the rank's readers yields its share of the epoch
        pipeline = pipeline.with_epoch(self.train_batches_per_epoch // self._readers_per_rank)
        return pipeline.with_length(self.train_batches_per_epoch, silent=True)

    def train_dataloader(self) -> DataLoader:
        # Lightning warns that __len__ of a multi-worker IterableDataset may be wrong; here it is exact
        # because with_epoch gives every worker its share of the epoch.
        warnings.filterwarnings("ignore", message=".*IterableDataset. has .__len__. defined")
        # persistent workers keep the pipeline's pass counters, so each epoch draws new shards/seeds
        return self._loader(self.train_dataset())

    # ---- evaluation ----------------------------------------------------------------------------
    def _eval_transform(self, sample: dict[str, Any], policy: str, num_lr: int) -> dict[str, Any]:
        # per-scene generator: random_k picks the same LRs on every run, rank and worker count
        rng = np.random.default_rng([self.seed, zlib.crc32(sample["key"].encode())])
        return select_lrs(sample, policy, num_lr, rng)

    def eval_dataset(
        self,
        split: str,
        limit: int = -1,
        distributed: bool = True,
        policy: str | None = None,
        num_lr: int | None = None,
        batch_size: int | None = None,
    ) -> wds.DataPipeline:
        """Finite pipeline over `split` (first `limit` records if > 0), each record read exactly once."""
        urls = self.shard_urls(split)
        counter = self.skip_counters[split]
        rank, world_size = process_rank() if distributed else (0, 1)
        self._check_enough_records(split, urls, limit, world_size)
        splitter = ExactlyOnceSplit(len(urls), limit, rank, world_size)
        policy = policy or self.data.eval_lr_policy
        num_lr = self.data.num_lr if num_lr is None else num_lr
        slots = self.data.max_lr if num_lr < 0 else max(self.data.max_lr, num_lr)
        return wds.DataPipeline(
            wds.SimpleShardList(urls),
            splitter.shards,
            counter.track_shards,
            wds.tarfile_to_samples(handler=counter.shard_handler),
            splitter.records,
            wds.map(self._decode, handler=counter.record_handler),
            counter.good,
            wds.map(partial(self._eval_transform, policy=policy, num_lr=num_lr)),
            counter.summarise_pass,
            wds.batched(
                batch_size or self.data.eval_batch_size,
                collation_fn=partial(collate_scenes, pad_to=slots),
                partial=True,
            ),
        )

    def _check_enough_records(self, split: str, urls: list[str], limit: int, world_size: int) -> None:
        """Fail fast where DDP would hang: a rank with no record skips the metric sync the others wait in."""
        if world_size < 2 or self.data.shards[split]:
            return
        manifest = Path(self.data.root) / "manifest.json"
        if not manifest.is_file():
            return
        info = json.loads(manifest.read_text())
        listed = sorted(info.get("shards", {}).get(split, []))
        if listed != sorted(Path(url).name for url in urls):
            return  # the manifest describes other shards (stale or hand-assembled folder): no count to trust
        count = int(info.get("counts", {}).get(split, world_size))
        records = min(count, limit) if limit and limit > 0 else count
        if records < world_size:
            raise UserError(f"the {split} split has {records} record(s) for {world_size} ranks; every rank "
                            f"needs one: raise data.{'val' if split == 'val' else 'test'}_subset or use fewer devices")

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.eval_dataset("val", limit=self.data.val_subset))

    def test_dataloader(self, distributed: bool = True) -> DataLoader:
        """The test split, shared out over DDP ranks; `distributed=False` reads all of it in this process."""
        return self._loader(self.eval_dataset("test", limit=self.data.test_subset, distributed=distributed))

    def scenes(
        self, split: str = "test", limit: int | None = None, **eval_options
    ) -> list[dict[str, Any]]:
        """Materialise decoded eval batches of `split` in this process (every rank gets all of them).

        limit None uses data.val_subset / data.test_subset; -1 = the whole split. `eval_options`
        (policy, num_lr, batch_size) override the config for this call.
        """
        if limit is None:
            limit = {"val": self.data.val_subset, "test": self.data.test_subset}.get(split, -1)
        return list(self.eval_dataset(split, limit=limit, distributed=False, **eval_options))

    def _loader(self, dataset: wds.DataPipeline) -> DataLoader:
        workers = self.data.num_workers
        return DataLoader(
            dataset,
            batch_size=None,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )


class SkippedRecordsCallback(L.Callback):
    """Logs `data/skipped_<split>` (summed over ranks) at the end of every train and val epoch."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module, "train")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking:
            self._log(trainer, pl_module, "val")

    @staticmethod
    def _log(trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SatDataModule):
            return
        counts = datamodule.skipped(split)
        pl_module.log(f"data/skipped_{split}", float(counts["total"]), reduce_fx="sum", sync_dist=True)
        if counts["total"]:
            log.warning("%s: %d record(s) skipped so far on this rank (%s)", split, counts["total"], counts)
