"""Writing shards: `ShardSetWriter` turns validated `Scene`s into `<split>-NNNNNN.tar` + manifest.json.

Every data source (synthetic generator and the converters in `data_prep/`) writes through this one
class, so all of them produce the same record, the same file names and the same manifest.

    with ShardSetWriter(out_dir, source="synthetic", config={...}) as writer:
        writer.write(scene, split="train")
        writer.skip("imgset0042", "LR/HR scale mismatch")   # counted, reported in the manifest

Every record is decoded again right after encoding and compared with what was handed in (a record
that would not read back as written is refused), and the manifest's `radiometry` section describes
what was written: per band min/max, the fraction of zero pixels and of pixels at value_max (saturated)
for HR and LR, plus the converters' own account of the source (NaN count, clipped and zeroed
fractions, source ranges; see data_prep/radiometry.py). `stats.lr_scenes` holds the spread of the
train records' LR means that `sample` compares a user's input with, and `normalisation.record` how
record values relate to source units (data/radiometry.py; value / value_max when a converter names
none).

A shard set appears whole or not at all: shards are written as `.<split>-NNNNNN.tar.partial` and
renamed, with the manifest written after them, only in `close()` (with Ctrl-C / SIGTERM held off
for those renames); an error or an interruption before that (`abandon()`) deletes the partial
files, so the folder keeps what it held before. `remove_unlisted=True` (`prepare --overwrite`) also
deletes, in that same step, the `<split>-*.tar` the new manifest does not list: the reader globs
`<split>-*.tar`, so a stale shard left beside the new ones would be read with them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from ..errors import UserError
from ..interrupts import held, keeping
from .radiometry import Normalisation, band_statistics, record_normalisation, summarise_scenes
from .record import RECORD_VERSION, Scene, decode_scene, encode_scene

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")


class ShardSetWriter:
    def __init__(self, out_dir: str | Path, source: str, config: dict[str, Any] | None = None,
                 max_count: int = 256, version: str = "1", remove_unlisted: bool = False):
        self.out = Path(out_dir)
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create output folder {self.out}: {exc.strerror}") from None
        if not os.access(self.out, os.W_OK):
            raise UserError(f"output folder {self.out} is not writable; choose another --out")
        self.source, self.config, self.max_count, self.version = source, dict(config or {}), max_count, version
        self.remove_unlisted = remove_unlisted
        self._writers: dict[str, wds.ShardWriter] = {}
        self.written: dict[str, list[str]] = defaultdict(list)  # split -> shard file names, as closed
        self._partials: list[Path] = []  # closed partial shards, renamed by close()
        self.counts: Counter = Counter()
        self.lr_counts: dict[str, list] = defaultdict(list)
        self.skipped: list = []
        # running per-band sums over HR pixels in [0, 1] for the manifest's normalisation stats
        self._sum = self._sumsq = None
        self._npix = 0
        self._record_stats = {"hr": _BandStats(), "lr": _BandStats()}
        self._source = {"hr": [], "lr": []}
        self._lr_means: dict[str, list[list[float]]] = defaultdict(list)  # split -> per-record LR band means
        self.value_maxes: set[float] = set()
        self._started = time.time()

    def _writer(self, split: str) -> wds.ShardWriter:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if split not in self._writers:
            pattern = str(self.out / f".{split}-%06d.tar.partial")
            self._writers[split] = wds.ShardWriter(pattern, maxcount=self.max_count, verbose=0,
                                                   post=lambda name: self._closed(split, name))
        return self._writers[split]

    def _closed(self, split: str, name: str) -> None:
        self._partials.append(Path(name))
        self.written[split].append(_final_name(name))

    def write(self, scene: Scene, split: str) -> None:
        scene.meta.setdefault("source", self.source)
        scene.meta["split"] = split
        sample = encode_scene(scene)
        _check_read_back(scene, sample)
        try:
            self._writer(split).write(sample)
        except OSError as exc:
            raise self._write_failed(exc) from None
        self.counts[split] += 1
        self._record_stats["hr"].add(scene.hr, float(scene.meta["value_max"]))
        self._record_stats["lr"].add(scene.lr.swapaxes(0, 1), float(scene.meta["value_max"]))
        for role, entry in (scene.meta.get("radiometry") or {}).items():
            if role in self._source and entry:
                self._source[role].append(entry)
        self.lr_counts[split].append(scene.num_lr)
        self.value_maxes.add(float(scene.meta["value_max"]))
        if scene.lr_mask.any():
            lr01 = scene.lr.astype(np.float64) / float(scene.meta["value_max"])
            self._lr_means[split].append(band_statistics(lr01, scene.lr_mask)[0])
        hr = scene.hr.astype(np.float64) / float(scene.meta["value_max"])
        flat = hr.reshape(hr.shape[0], -1)
        if self._sum is None:
            self._sum, self._sumsq = np.zeros(flat.shape[0]), np.zeros(flat.shape[0])
        self._sum += flat.sum(1)
        self._sumsq += (flat ** 2).sum(1)
        self._npix += flat.shape[1]

    def skip(self, key: str, reason: str) -> None:
        self.skipped.append({"key": key, "reason": reason})
        log.warning("skipped %s: %s", key, reason)

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """Publish the shards and write manifest.json (returned); on any failure, delete the partial shards."""
        try:
            return self._publish(extra)
        except OSError as exc:
            self.abandon()
            raise self._write_failed(exc) from None
        except BaseException:
            self.abandon()
            raise

    def _write_failed(self, exc: OSError) -> UserError:
        return UserError(f"cannot write the shards into {self.out}: {exc.strerror or exc}; free some space and run "
                         "prepare again (the folder keeps what it held)")

    def _publish(self, extra: dict[str, Any] | None) -> dict[str, Any]:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}
        mean = (self._sum / max(self._npix, 1)).tolist() if self._sum is not None else []
        std = (np.sqrt(np.maximum(self._sumsq / max(self._npix, 1) - np.square(mean), 0))).tolist() if mean else []
        reasons = Counter(s["reason"].split(":")[0] for s in self.skipped)
        manifest = {
            "source": self.source,
            "converter_version": self.version,
            "record_version": RECORD_VERSION,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "seconds": round(time.time() - self._started, 2),
            "config": self.config,
            "counts": {s: self.counts.get(s, 0) for s in SPLITS},
            # exactly the files this writer wrote: stale shards of an earlier run in the same folder
            # are not described by these counts (and `prepare --overwrite` removes them)
            "shards": {s: sorted(self.written.get(s, [])) for s in SPLITS},
            "lr_per_scene": {s: {"min": int(min(v)), "max": int(max(v)), "mean": float(np.mean(v))}
                             for s, v in self.lr_counts.items()},
            "stats": {"hr_mean": mean, "hr_std": std, "space": "[0,1] after division by value_max"},
            "skipped": {"count": len(self.skipped), "by_reason": dict(reasons), "items": self.skipped[:1000]},
            "radiometry": {
                "record": {role: stats.summary() for role, stats in self._record_stats.items()},
                "source": {role: _source_summary(entries) for role, entries in self._source.items() if entries},
            },
        }
        lr_means = self._lr_means.get("train") or [m for split in SPLITS for m in self._lr_means.get(split, [])]
        if lr_means:
            manifest["stats"]["lr_scenes"] = {"split": "train" if self._lr_means.get("train") else "all",
                                              **summarise_scenes(lr_means)}
        manifest.update(extra or {})
        if "normalisation" not in manifest and len(self.value_maxes) == 1:
            value_max = next(iter(self.value_maxes))
            manifest["normalisation"] = {"value_max": value_max, "record": record_normalisation(
                Normalisation.scale(value_max, description="record values as the source wrote them"))}
        tmp = self.out / "manifest.json.tmp"
        try:
            tmp.write_text(json.dumps(manifest, indent=2))
            # the shards, the manifest and the stale-shard removal: all of them or none
            with keeping(f"after the shard set was written in full to {self.out} (see manifest.json)"), held():
                for partial in self._partials:
                    os.replace(partial, partial.with_name(_final_name(partial.name)))
                self._partials = []
                os.replace(tmp, self.out / "manifest.json")
                if self.remove_unlisted:
                    self._remove_unlisted(manifest)
        finally:
            tmp.unlink(missing_ok=True)
        total = sum(self.counts.values())
        log.info("wrote %d scenes (%s) to %s; skipped %d", total,
                 ", ".join(f"{s}={self.counts.get(s, 0)}" for s in SPLITS), self.out, len(self.skipped))
        return manifest

    def __enter__(self) -> ShardSetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def abandon(self) -> None:
        """Close and delete the shards written so far: the folder keeps what it held before."""
        for writer in self._writers.values():
            try:
                writer.close()
            except (OSError, ValueError):  # a full disk again, or a stream a failed write already closed
                if writer.fname:  # the open shard, which webdataset reports only once closed
                    self._partials.append(Path(writer.fname))
        self._writers = {}
        self._delete_partials()

    def _delete_partials(self) -> None:
        for partial in self._partials:
            partial.unlink(missing_ok=True)
        self._partials = []

    def _remove_unlisted(self, manifest: dict[str, Any]) -> None:
        listed = {name for names in manifest["shards"].values() for name in names}
        stale = [p for split in SPLITS for p in sorted(self.out.glob(f"{split}-*.tar")) if p.name not in listed]
        for path in stale:
            path.unlink()
        if stale:
            log.warning("--overwrite: deleted %d stale shard(s) from %s", len(stale), self.out)


def _final_name(partial: str) -> str:
    """`/d/.train-000003.tar.partial` -> `train-000003.tar`."""
    return Path(partial).name[1:].removesuffix(".partial")


class _BandStats:
    """Running per-band min/max and zero / saturated pixel counts of written records."""

    def __init__(self) -> None:
        self.min = self.max = None
        self.zero = self.saturated = self.pixels = 0

    def add(self, array: np.ndarray, value_max: float) -> None:
        flat = array.reshape(array.shape[0], -1)  # bands first
        low, high = flat.min(1).astype(float), flat.max(1).astype(float)
        self.min = low if self.min is None else np.minimum(self.min, low)
        self.max = high if self.max is None else np.maximum(self.max, high)
        self.zero += int((flat == 0).sum())
        self.saturated += int((flat >= value_max).sum())
        self.pixels += int(flat.size)

    def summary(self) -> dict[str, Any]:
        if self.min is None:
            return {}
        return {"min": self.min.tolist(), "max": self.max.tolist(),
                "zero_fraction": round(self.zero / self.pixels, 6),
                "saturated_fraction": round(self.saturated / self.pixels, 6)}


def _source_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-record source accounts (data_prep/radiometry.py) -> the manifest's totals and extremes."""
    def band_extreme(key: str, reduce) -> list[float | None]:
        columns = zip(*[e[key] for e in entries if e.get(key)])
        return [reduce([v for v in column if v is not None], default=None) for column in columns]
    return {"nan_count": int(sum(e.get("nan", 0) for e in entries)),
            "clipped_fraction_max": max(e.get("clipped", 0.0) for e in entries),
            "clipped_fraction_mean": round(float(np.mean([e.get("clipped", 0.0) for e in entries])), 6),
            "zeroed_fraction_max": max(e.get("zeroed", 0.0) for e in entries),
            "source_min": band_extreme("source_min", min), "source_max": band_extreme("source_max", max)}


def _check_read_back(scene: Scene, sample: dict[str, Any]) -> None:
    """Decode what is about to be written and compare it with the scene (write-vs-read check)."""
    back = decode_scene(sample)
    for name in ("hr", "lr", "lr_mask", "hr_mask"):
        wrote, read = getattr(scene, name), getattr(back, name)
        if wrote is None and read is None:
            continue
        if wrote is None or read is None or wrote.shape != read.shape or not np.array_equal(wrote, read):
            raise UserError(f"write check failed: record {scene.key} does not read back its {name} as written")
