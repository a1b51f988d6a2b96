"""The loop every real-data converter shares: raw scene units -> `Scene`s -> shards, with skips counted.

A converter lists its raw units (an AOI folder, an fMoW image, a PROBA-V imgset), and gives a
function turning one unit into `(Scene, split)` pairs. This module runs it under a progress bar,
turns a bad unit into a counted skip when `--skip-bad` is set (and into a one-line error otherwise),
closes the `ShardSetWriter` (which writes `manifest.json`) and prints a one-paragraph summary.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm import tqdm

from satdiffmoe.data.record import RecordError, Scene, validate_scene
from satdiffmoe.data.shard_writer import ShardSetWriter
from satdiffmoe.errors import UserError

from .raster_io import chip_offsets, window_transform

log = logging.getLogger(__name__)
Unit = TypeVar("Unit")
COMMON_OPTIONS = ("out", "seed", "skip_bad", "shard_size", "source", "command", "args", "debug", "verbose")


def open_writer(args: argparse.Namespace, source: str, version: str) -> ShardSetWriter:
    """A writer for `args.out` whose manifest records the converter's options."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
               if k not in COMMON_OPTIONS and not callable(v)}
    return ShardSetWriter(args.out, source=source, config=options,
                          max_count=getattr(args, "shard_size", None) or 256, version=version,
                          remove_unlisted=bool(getattr(args, "overwrite", False)))


def write_units(writer: ShardSetWriter, units: Sequence[Unit], unit_key: Callable[[Unit], str],
                to_scenes: Callable[[Unit], Iterable[tuple[Scene, str]]], skip_bad: bool, desc: str) -> None:
    """Convert and write every unit; a `UserError` is fatal unless `skip_bad`, then it is a counted skip."""
    log.info("%s: converting %d raw scene(s) into %s", desc, len(units), writer.out)
    try:
        for unit in tqdm(units, desc=desc, unit="scene", dynamic_ncols=True):
            key = unit_key(unit)
            try:
                # build every chip of a unit before writing any, so a bad unit never leaves half its chips
                pairs = list(to_scenes(unit))
                for scene, _ in pairs:
                    _check_record(scene)
            except UserError as exc:
                if not skip_bad:
                    raise UserError(f"{exc} (scene {key}; pass --skip-bad to skip bad scenes)") from None
                writer.skip(key, str(exc))
                continue
            for scene, split in pairs:
                writer.write(scene, split)
    except BaseException:  # an error, Ctrl-C or SIGTERM: delete the partial shards (an unclosed tar
        writer.abandon()   # stream would also be flushed into a closed file at exit)
        raise


def _check_record(scene: Scene) -> None:
    """A record must be valid, stay within [0, value_max], and keep an LR that is not constant."""
    try:
        validate_scene(scene)
    except RecordError as exc:
        raise UserError(f"invalid record: {scene.key}: {exc}") from None
    value_max = scene.meta["value_max"]
    for name, array in (("hr", scene.hr), ("lr", scene.lr)):
        if int(array.max()) > value_max:
            raise UserError(f"invalid record: {scene.key}: {name} reaches {int(array.max())} > value_max {value_max}")
    valid = scene.lr_mask.astype(bool)
    if valid.any():
        kept = np.moveaxis(scene.lr, 1, -1)[valid]  # (valid pixels of all LRs) × C
        if kept.min() == kept.max():
            raise UserError(f"constant LR: {scene.key}: every valid LR pixel is {int(kept.min())} in every band")


def finish(writer: ShardSetWriter, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Close the writer (writes manifest.json) and print what was written and what was skipped, and why."""
    manifest = writer.close(extra)
    counts = manifest["counts"]
    skipped = manifest["skipped"]
    reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped["by_reason"].items())) or "none"
    print(f"{manifest['source']}: wrote {sum(counts.values())} scenes (train {counts['train']}, "
          f"val {counts['val']}, test {counts['test']}) to {writer.out} in {manifest['seconds']} s; "
          f"skipped {skipped['count']} ({reasons}); details in {writer.out / 'manifest.json'}.")
    return manifest


def chip_scenes(key: str, hr: np.ndarray, lr: np.ndarray, lr_mask: np.ndarray, meta: dict[str, Any],
                chip: int, hr_mask: np.ndarray | None = None,
                cloud_cover: Sequence[float | None] | None = None) -> list[Scene]:
    """Cut one scene into aligned chips: LR `chip`×`chip` at (y, x) <-> HR at (scale·y, scale·x).

    Each chip's `transform` is the HR affine moved to the chip's corner, so chips stay georeferenced.
    `cloud_cover` gives a per-LR value from the source metadata; where it is None the chip's masked
    fraction is used instead.
    """
    scale = int(meta["scale"])
    offsets = chip_offsets(lr.shape[-2:], chip)
    scenes = []
    for y, x in offsets:
        size_y, size_x = (chip, chip) if chip > 0 else lr.shape[-2:]
        hy, hx = y * scale, x * scale
        window = (slice(hy, hy + size_y * scale), slice(hx, hx + size_x * scale))
        chip_mask = lr_mask[:, y:y + size_y, x:x + size_x]
        given = list(cloud_cover) if cloud_cover is not None else [None] * lr.shape[0]
        chip_meta = dict(meta)
        chip_meta["cloud_cover"] = [round(float(c), 4) if c is not None else round(1.0 - float(m.mean()), 4)
                                    for c, m in zip(given, chip_mask)]
        chip_meta["transform"] = window_transform(meta.get("transform"), hy, hx)
        chip_key = key if len(offsets) == 1 else f"{key}_y{y:04d}x{x:04d}"
        scenes.append(Scene(
            key=chip_key.replace(".", "_"),  # webdataset splits keys at the first dot
            hr=np.ascontiguousarray(hr[(slice(None),) + window]),
            lr=np.ascontiguousarray(lr[:, :, y:y + size_y, x:x + size_x]),
            lr_mask=np.ascontiguousarray(chip_mask),
            meta=chip_meta,
            hr_mask=None if hr_mask is None else np.ascontiguousarray(hr_mask[window]),
        ))
    return scenes
