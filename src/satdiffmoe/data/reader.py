"""Reading shards: where they are, turning records into samples, counting what is skipped, and
splitting a stream over DDP ranks and DataLoader workers.

The pipelines themselves are assembled in `datamodule.py` from these webdataset stages.
"""

from __future__ import annotations

import datetime as dt
import glob
import logging
import math
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import webdataset as wds
from webdataset.shardlists import expand_urls
from webdataset.utils import pytorch_worker_info

from ..errors import UserError
from .record import RecordError, decode_scene, to_tensors
from .transforms import centre_crop

log = logging.getLogger(__name__)
REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://")
SKIP_CATEGORIES = ("shard", "record")  # unreadable/truncated tar vs. invalid record
LOGGED_SKIPS_PER_PROCESS = 20


def resolve_shards(spec: str | None, root: str, split: str) -> list[str]:
    """Shard URLs of `split` from a folder, glob, brace pattern or pipe:/http URL (`data.shards.<split>`).

    None means `<root>/<split>-*.tar`. Local patterns must match existing files; remote ones are
    passed to webdataset as they are.
    """
    how_to_fix = (
        f"run `satdiffmoe prepare synthetic --out {root}` (or another source), "
        f"or point data.root / data.shards.{split} at your shards"
    )
    spec = str(spec if spec is not None else root)
    if spec.startswith(REMOTE_PREFIXES):
        return expand_urls(spec)
    if os.path.isdir(spec):
        urls = sorted(glob.glob(os.path.join(spec, f"{split}-*.tar")))
        if not urls:
            raise UserError(f"no {split} shards ({split}-*.tar) in folder {spec}; {how_to_fix}")
        return urls
    if spec == str(root) and os.path.isfile(spec):  # data.root is a folder, never a file
        raise UserError(f"data.root={root} is a file, not a folder of shards; point data.root at the folder "
                        f"`satdiffmoe prepare` wrote (with manifest.json and {split}-*.tar)")
    urls = []
    for piece in expand_urls(spec):
        if glob.has_magic(piece):
            urls.extend(sorted(glob.glob(piece)))
        elif os.path.isfile(piece):
            urls.append(piece)
        else:
            raise UserError(f"{split} shard {piece} does not exist; {how_to_fix}")
    if not urls:
        raise UserError(f"no {split} shards match {spec}; {how_to_fix}")
    return urls


class SkipCounter:
    """Counts records skipped while reading one split; its handlers plug into webdataset stages.

    DataLoader workers are separate processes, so a plain counter would stay in the worker that
    skipped the record. The totals therefore live in a small shared-memory array created in the main
    process and inherited by the workers (`counts()` in the main process sees every worker of this
    rank); the datamodule's `SkippedRecordsCallback` sums them over ranks. Each worker also logs its
    own skips with the reason (the first few at WARNING) and a per-pass summary.
    Caveat: in sample-level splitting (fewer shards than ranks × workers) every reader of a damaged
    shard counts its tar error, so `shard` can exceed the number of damaged shards.
    """

    def __init__(self, split: str, max_consecutive: int = 0):
        self.split = split
        self.max_consecutive = max_consecutive  # 0 = skip for ever
        self._streak = 0  # skips since this process last read a good record
        self._totals = multiprocessing.Array("q", len(SKIP_CATEGORIES))
        self.local: Counter = Counter()  # this process only
        self._shard = "?"  # the shard being read in this process
        self._shard_failed = False  # a damaged tar raises once per bad member and once more for the stream

    def add(self, category: str, reason: str) -> None:
        with self._totals.get_lock():
            self._totals[SKIP_CATEGORIES.index(category)] += 1
        self.local[category] += 1
        level = logging.WARNING if sum(self.local.values()) <= LOGGED_SKIPS_PER_PROCESS else logging.DEBUG
        log.log(level, "skipped %s %s: %s", self.split, category, reason)
        self._streak += 1
        if self.max_consecutive and self._streak >= self.max_consecutive:
            raise UserError(f"{self._streak} {self.split} records/shards in a row could not be read (last: {reason}); "
                            "the shards look broken: re-run `satdiffmoe prepare`, or raise "
                            "data.max_consecutive_skips (0 = skip for ever)")

    def good(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after decoding: every record reaching it ends the current run of skips."""
        for sample in samples:
            self._streak = 0
            yield sample

    def shard_handler(self, exn: BaseException) -> bool:
        """webdataset handler for reading tars: count, log, continue with the next shard."""
        if not self._shard_failed:
            self._shard_failed = True
            message = str(exn.args[0]).split(" @ ")[0] if exn.args else ""
            self.add("shard", f"{self._shard}: {type(exn).__name__}: {message}")
        return True

    def record_handler(self, exn: BaseException) -> bool:
        """webdataset handler for decoding: count, log, continue with the next record."""
        reason = str(exn) if isinstance(exn, RecordError) else f"{type(exn).__name__}: {exn}"
        self.add("record", reason)
        return True

    def track_shards(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage on the shard list: lets `shard_handler` count one error per shard read."""
        for shard in shards:
            self._shard, self._shard_failed = shard.get("url", "?"), False
            yield shard

    def summarise_pass(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage: passes scenes through, then logs this reader's scenes and skips of the pass."""
        before, scenes = Counter(self.local), 0
        for sample in source:
            scenes += 1
            yield sample
        skipped = dict(self.local - before)
        worker, workers = worker_index()
        log.log(
            logging.WARNING if skipped else logging.DEBUG,
            "%s pass, worker %d of %d: %d scenes, skipped %s",
            self.split,
            worker + 1,
            workers,
            scenes,
            skipped or "none",
        )

    def counts(self) -> dict[str, int]:
        with self._totals.get_lock():
            counts = dict(zip(SKIP_CATEGORIES, self._totals[:]))
        return dict(counts, total=sum(counts.values()))


def _day_of_year(iso: str | None) -> float:
    if iso is None:
        return math.nan
    try:
        return float(dt.datetime.fromisoformat(str(iso)).timetuple().tm_yday)
    except ValueError:
        raise RecordError(f"acquisition time {iso!r} is not an ISO date") from None


def decode_sample(raw: dict[str, Any], hr_size: int, scale: int, channels: int,
                  lr_channels: int | None = None) -> dict[str, Any]:
    """Raw webdataset sample -> validated scene sample (dict of tensors); raises `RecordError`.

    Keys: key, hr (C×H×W), lr (N×C_lr×h×w), lr_mask (N×h×w), dt (N), lr_cloud (N), lr_doy (N), gsd,
    hr_mask (H×W). Pixels are in [-1, 1] (`record.to_tensors`). `lr_channels` None = `channels`.
    """
    lr_channels = channels if lr_channels is None else lr_channels
    try:
        scene = centre_crop(decode_scene(raw, expect_scale=scale, expect_channels=channels,
                                         expect_lr_channels=lr_channels), hr_size)
        tensors = to_tensors(scene)
        meta = scene.meta
        count = scene.num_lr
        cloud = meta.get("cloud_cover")
        if cloud is None or len(cloud) != count:  # derive it from the mask when the source has none
            lr_cloud = 1.0 - tensors.lr_mask.flatten(1).mean(1)
        else:
            lr_cloud = torch.tensor([math.nan if c is None else float(c) for c in cloud], dtype=torch.float32)
        times = meta.get("lr_times") or [None] * count
        if len(times) != count:
            raise RecordError(f"meta.lr_times has {len(times)} entries for {count} LR images")
    except RecordError as exc:
        raise RecordError(f"{raw.get('__key__', '?')}: {exc}") from None
    gsd = meta.get("gsd")
    return {
        "key": scene.key,
        "hr": tensors.hr,
        "lr": tensors.lr,
        "lr_mask": tensors.lr_mask,
        "dt": tensors.dt,
        "lr_cloud": lr_cloud,
        "lr_doy": torch.tensor([_day_of_year(t) for t in times], dtype=torch.float32),
        "gsd": math.nan if gsd is None else float(gsd),
        "hr_mask": tensors.hr_mask if tensors.hr_mask is not None else torch.ones(tensors.hr.shape[1:]),
    }


def check_first_record(url: str, decode: Callable[[dict[str, Any]], Any]) -> None:
    """Fail fast with a UserError when the first record of a split does not fit the config.

    Without this, a scale or band mismatch would make every record invalid: validation would
    silently see nothing, and training on resampled shards would skip records forever.
    """
    stream = wds.DataPipeline(
        wds.SimpleShardList([url]), wds.tarfile_to_samples(handler=wds.ignore_and_continue)
    )
    raw = next(iter(stream), None)
    if raw is None:
        raise UserError(f"shard {url} has no readable record; re-create it with `satdiffmoe prepare`")
    try:
        decode(raw)
    except RecordError as exc:
        raise UserError(
            f"first record of {url} does not fit the config ({exc}); check data.scale, "
            "data.channels, data.lr_channels and data.hr_size against the shards' manifest.json"
        ) from None


def process_rank() -> tuple[int, int]:
    """(rank, world size) of this process. Call it in the main process while building a pipeline:
    DataLoader worker processes do not always see the process group (spawned workers, mp.spawn
    ranks), and a worker that believes it is rank 0 of 1 would duplicate data across ranks."""
    rank, world_size, _, _ = pytorch_worker_info()
    return rank, world_size


def worker_index() -> tuple[int, int]:
    """(worker id, number of workers) of the DataLoader worker running this; (0, 1) in the main process."""
    info = torch.utils.data.get_worker_info()
    return (info.id, info.num_workers) if info is not None else (0, 1)


def reader_seed(rank: int) -> int:
    """Seed component of this rank × worker (webdataset's ResampledShards `worker_seed` hook)."""
    return rank * 1000 + worker_index()[0]


class ExactlyOnceSplit:
    """Splits a finite (val/test) stream so every record is read by exactly one rank × worker.

    With at least as many shards as readers, whole shards are dealt out round-robin (readers may
    get different sample counts: fine for evaluation, which never all-reduces per step). With fewer
    shards, every reader opens all shards and keeps every count-th record instead, so nothing is lost
    when there are e.g. 2 shards for 2 ranks × 2 workers. `limit` > 0 keeps only the first `limit`
    records of the split (same ones on every run) and always splits at record level, because a
    reader only knows the global position of a record when it reads the shards in order.
    `rank` and `world_size` come from `process_rank()` in the main process; (0, 1) reads
    everything in this process (for materialising evaluation caches).
    """

    def __init__(self, num_shards: int, limit: int = -1, rank: int = 0, world_size: int = 1):
        self.num_shards, self.limit, self.rank, self.world_size = num_shards, limit, rank, world_size

    def _reader(self) -> tuple[int, int]:
        worker, workers = worker_index()
        return self.rank * workers + worker, self.world_size * workers

    def _by_shard(self, readers: int) -> bool:
        return self.limit <= 0 and self.num_shards >= readers

    def shards(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        index, readers = self._reader()
        for position, shard in enumerate(source):
            if not self._by_shard(readers) or position % readers == index:
                yield shard

    def records(self, source: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        index, readers = self._reader()
        for position, record in enumerate(source):
            if 0 < self.limit <= position:
                return
            if self._by_shard(readers) or position % readers == index:
                yield record


def stream_rng(seed: int, rank: int, pass_index: int) -> np.random.Generator:
    """Random generator of one rank × worker for one pass; derived from the config seed only."""
    return np.random.default_rng([seed, rank, worker_index()[0], pass_index])


class SeededShuffle(wds.PipelineStage):
    """webdataset's shuffle buffer with a seed per (config seed, rank, worker, pass).

    wds.shuffle seeds from pid and time by default and detshuffle gives every worker the same
    seed; here each reader gets its own reproducible order.
    """

    def __init__(self, bufsize: int, seed: int, rank: int):
        self.bufsize, self.seed, self.rank, self.passes = bufsize, seed, rank, -1

    def run(self, source):
        self.passes += 1
        seed = int(stream_rng(self.seed, self.rank, self.passes).integers(2**31))
        return wds.shuffle(self.bufsize, min(self.bufsize, 64), seed=seed)(source)


class SeededMap(wds.PipelineStage):
    """Applies fn(sample, rng) with one generator per (config seed, rank, worker, pass)."""

    def __init__(
        self, fn: Callable[[dict[str, Any], np.random.Generator], dict[str, Any]], seed: int, rank: int
    ):
        self.fn, self.seed, self.rank, self.passes = fn, seed, rank, -1

    def run(self, source):
        self.passes += 1
        rng = stream_rng(self.seed, self.rank, self.passes)
        for sample in source:
            yield self.fn(sample, rng)
