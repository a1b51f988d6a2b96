"""fMoW -> shards, the DiffusionSat / SatDiffMoE setting: fMoW-RGB HR + fMoW-Sentinel LRs of the same place.

    satdiffmoe prepare fmow --root RAW --out DIR [--hr-size 256] [--scale 4] [--max-lr 8]
                            [--lr-bands all [--drop-bands 0 9 10]]

Expected raw layout (the fMoW-RGB and fMoW-Sentinel releases side by side under RAW):

    RAW/fmow-rgb/<split>/<category>/<category>_<loc>/<category>_<loc>_<k>_rgb.jpg
    RAW/fmow-rgb/<split>/<category>/<category>_<loc>/<category>_<loc>_<k>_rgb.json
        fMoW metadata: "timestamp" (ISO), "gsd" (m/px), "raw_location" (WKT polygon, lon lat), "cloud_cover"
    RAW/fmow-sentinel/<split>/<category>/<category>_<loc>/<category>_<loc>_<k>.tif
        Sentinel-2, 13 bands B1..B12 with B8A, uint16 DN (reflectance × 10000); float GeoTIFFs are read too
    RAW/fmow-sentinel/<split>.csv
        one row per Sentinel image: category, location_id, image_id, timestamp, polygon and, in the
        release, image_path (SatMAE util/datasets.py SentinelIndividualImageDataset reads
        `selection['image_path']`; DiffusionSat diffusionsat/data_util.py ~300 fmow_numerical_metadata
        looks up category/location_id/image_id/polygon). image_path is used when present (relative to
        --root or to the Sentinel folder's parent), else the path above.

<split> is a folder name from --splits (train, val, test_gt by default; test_gt is written as test).
That the release names its held-out folder and CSV `test_gt` is an assumption not checked against
the release itself.

One record per fMoW-RGB image: the HR is that image (centre square, resized to --hr-size); the LRs
are the Sentinel-2 images of the same category/location in the same split, B4, B3, B2 as RGB, centre
square resized to hr_size / scale, at most --max-lr of them (the nearest in time, kept in date order).
Δt = t_Sentinel − t_RGB in days.

Multispectral LR (`--lr-bands all`): the LRs keep every Sentinel-2 band in the file's order (B1..B12
with B8A), optionally without `--drop-bands` (0-based indices in that order; DiffusionSat drops 0, 9,
10 = B1, B9, B10, which leaves 10 bands). The records' `meta.lr_bands` and the manifest's `lr_bands`
name the bands kept, and the manifest's `lr_bands.lr_rgb` is the `data.lr_rgb` to train with (the
positions of B4, B3, B2: [3, 2, 1] for all 13, [2, 1, 0] without 0, 9, 10). B2, B3, B4 cannot be
dropped. The default (`--lr-bands rgb`) is B4, B3, B2 only, as above.

Radiometry. The HR JPEG is uint8 (value_max 255). Sentinel DN is stretched per band the way
DiffusionSat and SatMAE do (SentinelNormalize, diffusionsat/data_util.py ~561): [mean − kσ, mean + kσ]
of the fMoW-Sentinel training set onto 0..255, k = --s2-sigmas (2), so HR and LR share one value
range. The mean and σ are the dataset's fixed per-band statistics (as in SentinelNormalize), not each
image's, so one DN means the same in every record. The stretch is recorded in manifest.json
(`normalisation`; `normalisation.record` is the form data/radiometry.py reads), and a value outside
it clips and is counted. With k = 2 a Gaussian band clips about 2.3 % above mean + 2σ by construction, so this
converter's --max-clipped default is 0.05. `--s2-max D` instead maps DN 0..D linearly (the old fixed
stretch). An LR pixel that is 0 (or NaN) in every band is nodata. `hr_cloud_cover` is the RGB JSON's
percent / 100, as DiffusionSat reads it (data_util.py fmow_numerical_metadata: `cloud_cover / 100.`).
fMoW-RGB JPEGs carry no georeference, so records have lon/lat (centre of raw_location) but no crs.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from satdiffmoe.data.radiometry import Normalisation, record_normalisation
from satdiffmoe.data.record import Scene
from satdiffmoe.errors import UserError

from .conversion import finish, open_writer, write_units
from .dates import delta_days, iso, parse_date
from .radiometry import finite_pixels, quantise, summarise
from .raster_io import center_square, nonzero_mask, read_raster, resize, resize_mask
from .splits import normalise_split

VERSION = "2"
S2_RGB_BANDS = [4, 3, 2]  # B4, B3, B2 in the 13-band order (1-based band numbers)
S2_BAND_NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
# per-band mean / std of fMoW-Sentinel DN, all 13 bands (SatMAE SentinelIndividualImageDataset and
# DiffusionSat data_util.py SentinelNormalize carry the same numbers)
S2_MEAN = [1370.19151926, 1184.3824625, 1120.77120066, 1136.26026392, 1263.73947144, 1645.40315151,
           1846.87040806, 1762.59530783, 1972.62420416, 582.72633433, 14.77112979, 1732.16362238, 1247.91870117]
S2_STD = [633.15169573, 650.2842772, 712.12507725, 965.23119807, 948.9819932, 1108.06650639,
          1258.36394548, 1233.1492281, 1364.38688993, 472.37967789, 14.3114637, 1310.36996126, 1087.6020813]
Location = tuple[str, str, str]  # (split folder, category, location id)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="folder holding fmow-rgb/ and fmow-sentinel/")
    parser.add_argument("--rgb-dir", default="fmow-rgb", help="fMoW-RGB folder, relative to --root")
    parser.add_argument("--sentinel-dir", default="fmow-sentinel", help="fMoW-Sentinel folder, relative to --root")
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test_gt"], help="split folders to convert")
    parser.add_argument("--hr-size", type=int, default=256, help="HR side in pixels after resizing")
    parser.add_argument("--scale", type=int, default=4, help="HR size / LR size")
    parser.add_argument("--max-lr", type=int, default=8, help="most LR images per record, nearest in time (0 = all)")
    parser.add_argument("--s2-sigmas", type=float, default=2.0,
                        help="per-band stretch [mean − kσ, mean + kσ] -> 0..255 (DiffusionSat's SentinelNormalize, k=2)")
    parser.add_argument("--s2-max", type=float, default=None,
                        help="instead of the stretch: Sentinel DN mapped linearly to 255 (brighter clips)")
    parser.add_argument("--lr-bands", choices=("rgb", "all"), default="rgb",
                        help="LR bands: rgb = B4, B3, B2 (as the HR); all = every Sentinel-2 band (multispectral "
                        "LR; train with data.lr_channels and data.lr_rgb from the manifest's lr_bands)")
    parser.add_argument("--drop-bands", type=int, nargs="+", default=None,
                        help="with --lr-bands all: 0-based Sentinel-2 bands to leave out (DiffusionSat: 0 9 10)")
    # the 2σ stretch clips ~2.3 % of a Gaussian band by construction (see the module docstring)
    parser.set_defaults(max_clipped=0.05)


def convert(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    if args.hr_size % args.scale:
        raise UserError(f"--hr-size {args.hr_size} is not a multiple of --scale {args.scale}")
    lr_bands(args)  # checks --lr-bands / --drop-bands before reading anything
    rgb_root, s2_root = root / args.rgb_dir, root / args.sentinel_dir
    for folder in (rgb_root, s2_root):
        if not folder.is_dir():
            raise UserError(f"missing folder: {folder} does not exist; pass --root (and --rgb-dir/--sentinel-dir)")
    images: list[tuple[Location, Path]] = []
    sentinel: dict[Location, list[tuple[datetime, Path]]] = {}
    for split_dir in args.splits:
        images += [((split_dir, p.parent.parent.name, _location_id(p.parent.name)), p)
                   for p in sorted((rgb_root / split_dir).glob("*/*/*_rgb.json"))]
        sentinel.update(_sentinel_index(s2_root, split_dir))
    if not images:
        raise UserError(f"no fMoW-RGB images: {rgb_root}/<split>/<category>/<category>_<loc>/*_rgb.json "
                        f"matched nothing for splits {args.splits}")
    writer = open_writer(args, "fmow", VERSION)
    write_units(writer, images, lambda item: item[1].name[: -len("_rgb.json")],
                lambda item: _image_scene(item[0], item[1], sentinel.get(item[0], []), args),
                args.skip_bad, desc="fmow")
    return finish(writer, {"value_max": 255, "scale": args.scale, "bands": ["R", "G", "B"], "hr_size": args.hr_size,
                           "normalisation": _normalisation(args), "lr_bands": _lr_band_manifest(args)})


def lr_bands(args: argparse.Namespace) -> list[int]:
    """The Sentinel-2 bands the LRs keep, as 1-based band numbers in record order."""
    drop = list(args.drop_bands or [])
    if args.lr_bands == "rgb":
        if drop:
            raise UserError("--drop-bands needs --lr-bands all (the default keeps only B4, B3, B2)")
        return list(S2_RGB_BANDS)
    bad = [b for b in drop if not 0 <= b < len(S2_BAND_NAMES)]
    if bad:
        raise UserError(f"--drop-bands {bad}: Sentinel-2 bands are 0..{len(S2_BAND_NAMES) - 1} (0 = B1, 12 = B12)")
    rgb = [b for b in drop if b + 1 in S2_RGB_BANDS]
    if rgb:
        raise UserError(f"--drop-bands {rgb} would drop {', '.join(S2_BAND_NAMES[b] for b in rgb)}; B4, B3, B2 "
                        "observe the HR's RGB and must stay (DiffusionSat drops 0 9 10)")
    return [b + 1 for b in range(len(S2_BAND_NAMES)) if b not in drop]


def _lr_band_manifest(args: argparse.Namespace) -> dict:
    """The manifest's `lr_bands`: names and count of the LR bands, and the data.lr_rgb mapping them onto R, G, B."""
    bands = lr_bands(args)
    lr_rgb = None if args.lr_bands == "rgb" else [bands.index(b) for b in S2_RGB_BANDS]
    return {"names": [S2_BAND_NAMES[b - 1] for b in bands], "count": len(bands), "lr_rgb": lr_rgb}


def _stretch(args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """(scale, offset) per LR band: record = (DN − offset) · scale."""
    bands = lr_bands(args)
    if args.s2_max:
        return [255.0 / args.s2_max] * len(bands), [0.0] * len(bands)
    low = [S2_MEAN[b - 1] - args.s2_sigmas * S2_STD[b - 1] for b in bands]
    high = [S2_MEAN[b - 1] + args.s2_sigmas * S2_STD[b - 1] for b in bands]
    return [255.0 / (h - lo) for lo, h in zip(low, high)], low


def _normalisation(args: argparse.Namespace) -> dict:
    scale, offset = _stretch(args)
    return {"value_max": 255, "hr": "fMoW-RGB JPEG values",
            "lr": "linear DN 0..s2_max -> 0..255" if args.s2_max else
            f"per band [mean − {args.s2_sigmas:g}σ, mean + {args.s2_sigmas:g}σ] of fMoW-Sentinel DN -> 0..255 "
            "(DiffusionSat SentinelNormalize)",
            "lr_bands": [S2_BAND_NAMES[b - 1] for b in lr_bands(args)], "lr_offset_dn": [round(v, 4) for v in offset],
            "lr_dn_per_value": [round(1 / v, 6) for v in scale], "to_dn": "value · lr_dn_per_value + lr_offset_dn",
            "record": record_normalisation(Normalisation.scale(255, 255.0, "8-bit JPEG", "fMoW-RGB JPEG values"),
                                           _lr_normalisation(args))}


def _lr_normalisation(args: argparse.Namespace) -> Normalisation:
    """The LR's Normalisation: per dataset (the fMoW-Sentinel training set's fixed per-band mean and σ,
    as SentinelNormalize uses them), not per image, so one DN means the same in every record."""
    if args.s2_max:
        return Normalisation.scale(255, float(args.s2_max), "Sentinel-2 DN", "DN 0..--s2-max -> 0..255")
    bands = [b - 1 for b in lr_bands(args)]
    names = ", ".join(S2_BAND_NAMES[b] for b in bands)
    return Normalisation.stretch([S2_MEAN[b] for b in bands], [S2_STD[b] for b in bands], args.s2_sigmas, 255,
                                 "Sentinel-2 DN", f"fMoW-Sentinel {names}; DiffusionSat SentinelNormalize")


def _location_id(folder_name: str) -> str:
    return folder_name.rsplit("_", 1)[-1]


def _sentinel_index(s2_root: Path, split_dir: str) -> dict[Location, list[tuple[datetime, Path]]]:
    """(split, category, location) -> [(timestamp, tif)] from the split's CSV of timestamps."""
    folder = s2_root / split_dir
    if not folder.is_dir():
        return {}
    table = s2_root / f"{split_dir}.csv"
    if not table.is_file():
        raise UserError(f"no dates: {table} (the fMoW-Sentinel timestamp CSV for {folder}) does not exist")
    index: dict[Location, list[tuple[datetime, Path]]] = defaultdict(list)
    with table.open(newline="") as handle:
        for row in csv.DictReader(handle):
            category, loc, image = row["category"], str(row["location_id"]), str(row["image_id"])
            path = folder / category / f"{category}_{loc}" / f"{category}_{loc}_{image}.tif"
            if row.get("image_path"):  # the release's own path column, relative to the data root
                listed = [s2_root.parent / row["image_path"], s2_root / row["image_path"]]
                path = next((p for p in listed if p.is_file()), path)
            index[(split_dir, category, loc)].append((parse_date(row["timestamp"], f"{table} ({path.name})"), path))
    return index


def _image_scene(location: Location, meta_path: Path, sentinel: list[tuple[datetime, Path]],
                 args: argparse.Namespace) -> Iterator[tuple[Scene, str]]:
    split_dir, category, loc = location
    jpg = meta_path.with_name(meta_path.name.replace("_rgb.json", "_rgb.jpg"))
    if not jpg.is_file():
        raise UserError(f"missing HR: {jpg} does not exist (its metadata {meta_path.name} does)")
    try:
        info = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"unreadable file: {meta_path} ({exc})") from None
    hr_time = parse_date(info.get("timestamp"), f"{meta_path} field 'timestamp'")
    if not sentinel:
        raise UserError(f"missing LR: no fMoW-Sentinel image of {category}_{loc} in split {split_dir}")

    chosen = sorted(sentinel, key=lambda item: abs((item[0] - hr_time).total_seconds()))
    chosen = sorted(chosen[: args.max_lr] if args.max_lr > 0 else chosen)
    lr_size = args.hr_size // args.scale
    lrs, masks, lr_stats = [], [], []
    scale, offset = _stretch(args)
    bands = lr_bands(args)
    for _, path in chosen:
        raw, _, _ = center_square(read_raster(path, bands).array)
        valid = finite_pixels(raw) & nonzero_mask(np.nan_to_num(raw)).astype(bool)
        masks.append(resize_mask(valid.astype(np.uint8), (lr_size, lr_size)))
        # resize in float (an integer resize would round and clamp before the stretch), then quantise
        small = resize(np.nan_to_num(raw).astype(np.float32), (lr_size, lr_size))
        lr, stats = quantise(small, scale, 255, np.uint8, f"LR {path}", args.max_clipped, offset=offset)
        lrs.append(lr)
        lr_stats.append(stats)

    hr, _, _ = center_square(read_raster(jpg).array)
    native_side = hr.shape[-1]
    hr, hr_stats = quantise(resize(hr.astype(np.float32), (args.hr_size, args.hr_size)), 1.0, 255, np.uint8,
                            f"HR {jpg}", args.max_clipped)
    gsd = info.get("gsd")
    lr_mask = np.stack(masks)
    meta = {
        "source": "fmow", "category": category, "location": loc, "scale": args.scale, "bands": ["R", "G", "B"],
        "value_max": 255, "lr_dt": [delta_days(t, hr_time) for t, _ in chosen],
        "hr_time": iso(hr_time), "lr_times": [iso(t) for t, _ in chosen],
        "gsd": float(gsd) * native_side / args.hr_size if gsd else None,
        "hr_cloud_cover": None if info.get("cloud_cover") is None else float(info["cloud_cover"]) / 100.0,
        "radiometry": {"hr": summarise([hr_stats]), "lr": summarise(lr_stats)},
        "cloud_cover": [round(1.0 - float(m.mean()), 4) for m in lr_mask],
        **_lon_lat(info.get("raw_location")),
    }
    if args.lr_bands != "rgb":
        meta["lr_bands"] = [S2_BAND_NAMES[b - 1] for b in bands]
    yield Scene(key=meta_path.name[: -len("_rgb.json")].replace(".", "_"), hr=hr, lr=np.stack(lrs),
                lr_mask=lr_mask, meta=meta), normalise_split(split_dir, str(meta_path.parent))


def _lon_lat(polygon: str | None) -> dict[str, float]:
    """Centre of a WKT polygon "POLYGON ((lon lat, ...))" as lon/lat (empty when absent)."""
    numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", str(polygon or ""))]
    if len(numbers) < 2:
        return {}
    pairs = list(zip(numbers[0::2], numbers[1::2]))
    if len(pairs) > 1 and pairs[0] == pairs[-1]:  # WKT rings repeat the first vertex at the end
        pairs = pairs[:-1]
    return {"lon": round(float(np.mean([p[0] for p in pairs])), 6), "lat": round(float(np.mean([p[1] for p in pairs])), 6)}
