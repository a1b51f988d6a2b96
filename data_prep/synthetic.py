"""SynthSat: the embedded synthetic source (`satdiffmoe prepare synthetic`).

Each scene is a procedural landscape (`satdiffmoe.data.synthetic_scene`) seen once in high
resolution at day 0 and N times in low resolution at days spread over ±`dt_range_days`. Every LR
image is an independent acquisition of the scene *on its own day*:

    scene(day) -> + clouds -> PSF blur -> detector area -> sampling on a sub-pixel shifted grid
               -> radiometric gain/offset -> sensor noise -> uint8      (cloud mask stored)

so LR images carry complementary information (different shifts, noise, clouds) and Δt matters
(season, crop rotation, new buildings). Scene `i` is drawn from a generator seeded by (seed, i), so
the output does not depend on the number of worker processes.

`--lr-bands 13` writes multispectral LR records (HR stays RGB): the 13 Sentinel-2 bands of
`synthetic_scene.S2_BANDS`, where B4, B3, B2 (indices 3, 2, 1) are exactly the RGB LR of the default
output and the other ten are `synthetic_scene.sentinel2_bands` proxies of the same scene, acquired
through the same clouds, optics, sub-pixel grid and global gain/offset, without sensor noise (they
draw nothing from the scene's generator, so every other value of the dataset stays as it is).
The manifest's `lr_bands` names the LR bands and the `data.lr_rgb` to train with ([3, 2, 1]).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from satdiffmoe.data.record import Scene
from satdiffmoe.data.shard_writer import ShardSetWriter
from satdiffmoe.data.synthetic_scene import S2_BANDS, S2_RGB, Landscape, render, sample_landscape, sentinel2_bands
from satdiffmoe.errors import UserError

log = logging.getLogger(__name__)
GENERATOR_VERSION = "synthsat-1"
HR_GSD_M = 2.5
BANDS = ["red", "green", "blue"]
LR_BAND_CHOICES = (3, len(S2_BANDS))  # RGB (the HR's bands) or Sentinel-2's 13
FIRST_HR_DATE = dt.date(2016, 1, 1)
CLEAR_PROBABILITY = 0.35  # share of LR acquisitions without any cloud


@dataclass(frozen=True)
class SynthSatParams:
    hr_size: int = 64
    scale: int = 4
    min_lr: int = 2
    max_lr: int = 8
    dt_range_days: float = 730.0
    seed: int = 0
    lr_bands: int = 3  # 3 = RGB like the HR; 13 = Sentinel-2 bands (B4, B3, B2 = the RGB)

    def check(self) -> None:
        if self.hr_size < 8:
            raise UserError(f"--hr-size {self.hr_size} is too small: SynthSat scenes need at least 8 px; "
                            "e.g. --hr-size 64 --scale 4")
        if self.scale < 1 or self.hr_size % self.scale or self.hr_size // self.scale < 2:
            raise UserError(f"--scale {self.scale} must divide --hr-size {self.hr_size} and leave LR images of at "
                            "least 2 px; e.g. --hr-size 64 --scale 4")
        if not 1 <= self.min_lr <= self.max_lr:
            raise UserError(f"need 1 <= --min-lr ({self.min_lr}) <= --max-lr ({self.max_lr})")
        if self.dt_range_days <= 0:
            raise UserError(f"--dt-range-days must be > 0, got {self.dt_range_days}")
        if self.lr_bands not in LR_BAND_CHOICES:
            raise UserError(f"--lr-bands must be 3 (RGB) or 13 (Sentinel-2 bands), got {self.lr_bands}")


def cloud_opacity(rng: np.random.Generator, size: int) -> np.ndarray:
    """Soft-edged cloud opacity (H×W in [0, 1]) covering 5-70% of the scene, or none."""
    if rng.random() < CLEAR_PROBABILITY:
        return np.zeros((size, size))
    # smooth noise drawn on a 4× coarser grid and zoomed: same look, a fraction of the filter cost
    coarse = max(size // 4, 4)
    field = ndimage.zoom(
        ndimage.gaussian_filter(rng.standard_normal((coarse, coarse)), coarse / 8, mode="wrap"),
        size / coarse,
        order=1,
        mode="nearest",
        grid_mode=True,
    )
    threshold = np.quantile(field, 1.0 - rng.uniform(0.05, 0.7))
    return np.clip((field - threshold) / (0.5 * field.std() + 1e-8), 0.0, 1.0)


def acquire_lr(image: np.ndarray, rng: np.random.Generator, scale: int,
               extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One LR acquisition of a C×H×W [0, 1] scene -> (C×h×w float LR, h×w bool clear mask).

    `extra` (E×H×W) are further bands seen in the same acquisition: same clouds, optics, sampling
    grid and global gain/offset, no sensor noise. They draw nothing from `rng` and go through their own
    filter calls, so the first C bands (and the rest of the dataset) are the same with or without
    them; the LR is then (C+E)×h×w.
    """
    channels, size = image.shape[0], image.shape[1]
    alpha = cloud_opacity(rng, size)
    cloud = rng.uniform(0.85, 0.97)
    seen = image * (1 - alpha) + cloud * alpha
    # the cloud opacity goes through the same optics as the pixels, so the mask lines up with the LR
    stack = np.concatenate([seen, alpha[None]])
    sigma = rng.uniform(0.35, 0.6) * scale
    # sample the LR pixel centres on a grid shifted by a random sub-pixel offset (in LR pixels: ±0.5)
    low_size = size // scale
    rows = np.arange(low_size) * scale + scale // 2 + rng.uniform(-scale / 2, scale / 2)
    cols = np.arange(low_size) * scale + scale // 2 + rng.uniform(-scale / 2, scale / 2)

    def optics(bands: np.ndarray) -> np.ndarray:
        bands = ndimage.gaussian_filter(bands, (0, sigma, sigma), mode="nearest")  # optics PSF
        bands = ndimage.uniform_filter(bands, (1, scale, scale), mode="nearest")  # detector pixel area
        grid = np.meshgrid(np.arange(bands.shape[0]), rows, cols, indexing="ij")
        return ndimage.map_coordinates(bands, grid, order=1, mode="nearest")

    low = optics(stack)
    pixels, alpha_low = low[:channels], low[channels]
    global_gain = rng.uniform(0.88, 1.12)
    gain = global_gain * rng.uniform(0.97, 1.03, (channels, 1, 1))
    offset = rng.uniform(-0.04, 0.04)
    pixels = pixels * gain + offset + rng.normal(0, rng.uniform(0.005, 0.02), pixels.shape)
    if extra is not None:
        pixels = np.concatenate([pixels, optics(extra * (1 - alpha) + cloud * alpha) * global_gain + offset])
    return np.clip(pixels, 0.0, 1.0), alpha_low < 0.05


def acquire_bands(image: np.ndarray, rng: np.random.Generator, params: SynthSatParams) -> tuple[np.ndarray, np.ndarray]:
    """The LR acquisition of an RGB scene in `params.lr_bands` bands (13: `S2_BANDS` order)."""
    if params.lr_bands == len(BANDS):
        return acquire_lr(image, rng, params.scale)
    others = [i for i in range(len(S2_BANDS)) if i not in S2_RGB]
    low, mask = acquire_lr(image, rng, params.scale, extra=sentinel2_bands(image)[others])
    bands = np.empty((len(S2_BANDS),) + low.shape[1:], dtype=low.dtype)
    bands[list(S2_RGB)], bands[others] = low[: len(BANDS)], low[len(BANDS):]
    return bands, mask


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255.0).astype(np.uint8)


@dataclass
class ScenePlan:
    """What scene `index` is before any acquisition: its place, HR date and LR days (Δt)."""

    land: Landscape
    hr_date: dt.date
    days: np.ndarray  # sorted LR days relative to the HR date
    rng: np.random.Generator  # continues into the acquisitions (clouds, shifts, noise)


def plan_scene(params: SynthSatParams, index: int) -> ScenePlan:
    rng = np.random.default_rng([params.seed, index])
    hr_date = FIRST_HR_DATE + dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    land = sample_landscape(rng, params.hr_size, hr_date.timetuple().tm_yday - 1, params.dt_range_days)
    count = int(rng.integers(params.min_lr, params.max_lr + 1))
    range_days = int(params.dt_range_days)
    days = np.sort(rng.integers(-range_days, range_days + 1, count))
    return ScenePlan(land, hr_date, days, rng)


def make_scene(params: SynthSatParams, index: int) -> Scene:
    """Scene number `index` of the dataset defined by `params` (pure function of both)."""
    plan = plan_scene(params, index)
    land, hr_date, days, rng = plan.land, plan.hr_date, plan.days, plan.rng
    lrs, masks = zip(*(acquire_bands(render(land, float(day)), rng, params) for day in days))
    lr_mask = np.stack(masks).astype(np.uint8)
    meta = {
        "source": "synthetic",
        "generator": GENERATOR_VERSION,
        "scale": params.scale,
        "bands": BANDS,
        "value_max": 255,
        "gsd": HR_GSD_M,
        "lr_gsd": HR_GSD_M * params.scale,
        "hr_time": hr_date.isoformat(),
        "lr_times": [(hr_date + dt.timedelta(days=int(day))).isoformat() for day in days],
        "lr_dt": [float(day) for day in days],
        "cloud_cover": [round(1.0 - float(m.mean()), 4) for m in lr_mask],
    }
    if params.lr_bands != len(BANDS):
        meta["lr_bands"] = list(S2_BANDS)
    return Scene(
        key=f"synthsat-s{params.seed}-{index:06d}",
        hr=_to_uint8(render(land, 0.0)),
        lr=_to_uint8(np.stack(lrs)),
        lr_mask=lr_mask,
        meta=meta,
    )


def assign_splits(num_scenes: int, val_frac: float, test_frac: float, seed: int) -> list[str]:
    """Split name per scene index: exact counts (round(N·frac), at least 1 if the fraction is > 0)."""
    if not (0 <= val_frac < 1 and 0 <= test_frac < 1 and val_frac + test_frac < 1):
        raise UserError(
            f"--val-frac {val_frac} and --test-frac {test_frac} must be in [0, 1) and sum below 1"
        )
    n_val = max(int(round(num_scenes * val_frac)), int(val_frac > 0))
    n_test = max(int(round(num_scenes * test_frac)), int(test_frac > 0))
    if n_val + n_test >= num_scenes:
        raise UserError(
            f"--num-scenes {num_scenes} is too few for val/test splits; use at least {n_val + n_test + 1}"
        )
    splits = np.array(["train"] * num_scenes, dtype=object)
    order = np.random.default_rng(seed).permutation(num_scenes)
    splits[order[:n_val]] = "val"
    splits[order[n_val : n_val + n_test]] = "test"
    return list(splits)


def generate(params: SynthSatParams, num_scenes: int, workers: int = 1) -> Iterator[Scene]:
    """Scenes 0..num_scenes-1 in order, optionally generated by a process pool."""
    if workers <= 1:
        yield from (make_scene(params, i) for i in range(num_scenes))
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(_make_scene_star, ((params, i) for i in range(num_scenes)), chunksize=16)


def _make_scene_star(args) -> Scene:
    return make_scene(*args)


def lr_band_manifest(lr_bands: int) -> dict[str, Any]:
    """The manifest's `lr_bands`: LR band names and count, and the data.lr_rgb that maps them onto the HR."""
    if lr_bands == len(BANDS):
        return {"lr_bands": {"names": list(BANDS), "count": len(BANDS), "lr_rgb": None}}
    return {"lr_bands": {"names": list(S2_BANDS), "count": len(S2_BANDS), "lr_rgb": list(S2_RGB)}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--num-scenes", type=int, default=1024, help="scenes in all splits together")
    parser.add_argument("--hr-size", type=int, default=64, help="HR side in pixels")
    parser.add_argument("--scale", type=int, default=4, help="HR size / LR size")
    parser.add_argument("--min-lr", type=int, default=2, help="fewest LR acquisitions per scene")
    parser.add_argument("--max-lr", type=int, default=8, help="most LR acquisitions per scene")
    parser.add_argument(
        "--dt-range-days", type=float, default=730.0, help="LR dates within ±this many days of the HR"
    )
    parser.add_argument("--val-frac", type=float, default=0.1, help="share of scenes in the val split")
    parser.add_argument("--test-frac", type=float, default=0.1, help="share of scenes in the test split")
    parser.add_argument(
        "--workers", type=int, default=1, help="generator processes (output is identical for any value)"
    )
    parser.add_argument("--lr-bands", type=int, default=3, choices=LR_BAND_CHOICES,
                        help="LR bands: 3 = RGB like the HR; 13 = Sentinel-2 B1..B12 with B8A (B4, B3, B2 are "
                        "the RGB LR; train with data.lr_channels=13 data.lr_rgb=[3,2,1])")


def convert(args: argparse.Namespace) -> dict[str, Any]:
    params = SynthSatParams(
        hr_size=args.hr_size,
        scale=args.scale,
        min_lr=args.min_lr,
        max_lr=args.max_lr,
        dt_range_days=args.dt_range_days,
        seed=args.seed,
        lr_bands=args.lr_bands,
    )
    params.check()
    if args.num_scenes < 1:
        raise UserError(f"--num-scenes must be >= 1, got {args.num_scenes}")
    splits = assign_splits(args.num_scenes, args.val_frac, args.test_frac, args.seed)
    started = time.perf_counter()
    config = dict(
        asdict(params),
        generator=GENERATOR_VERSION,
        num_scenes=args.num_scenes,
        val_frac=args.val_frac,
        test_frac=args.test_frac,
    )
    writer = ShardSetWriter(
        args.out, source="synthetic", config=config, max_count=args.shard_size, version=GENERATOR_VERSION,
        remove_unlisted=bool(getattr(args, "overwrite", False)),
    )
    try:
        scenes = generate(params, args.num_scenes, args.workers)
        for index, scene in enumerate(tqdm(scenes, total=args.num_scenes, desc="synthsat", unit="scene")):
            writer.write(scene, splits[index])
    except BaseException:
        writer.abandon()  # deletes the partial shards: the folder keeps what it held
        raise
    writer.close(lr_band_manifest(params.lr_bands))  # writes manifest.json
    seconds = time.perf_counter() - started
    log.info(
        "generated %d scenes in %.1f s (%.0f scenes/s)", args.num_scenes, seconds, args.num_scenes / seconds
    )
    return json.loads((Path(args.out) / "manifest.json").read_text())
