"""WorldStrat -> shards: one SPOT HR tile and up to 16 Sentinel-2 revisits per AOI, cut into aligned chips.

    satdiffmoe prepare worldstrat --root RAW --out DIR [--scale 4] [--lr-chip 32] [--bands true_color]

Expected raw layout (the public WorldStrat release; every name below is an option):

    RAW/metadata.csv                          dates per AOI (see below)
    RAW/stratified_train_val_test_split.csv   official split: columns `tile`, `split` (train/val/test)
    RAW/hr_dataset/<AOI>/<AOI>_rgbn.tiff      SPOT 6/7, bands R, G, B, NIR, uint16 12-bit, georeferenced
    RAW/hr_dataset/<AOI>/<AOI>_rgb.png        8-bit RGB variant (--hr-format png)
    RAW/lr_dataset/<AOI>/L2A/<AOI>-<i>-L2A_data.tiff
                                              revisit i of Sentinel-2 L2A: 12 bands B1..B12 without B10
                                              (13 bands with B10 for --level L1C), uint16
    RAW/lr_dataset/<AOI>/L2A/<AOI>-<i>-L2A_data.png   8-bit RGB variant (--lr-format png)

`metadata.csv` has an AOI column (`tile`), the HR date (`highres_date`) and the LR dates
(`lowres_date`), either one row per revisit with a `revisit` column holding i, or one row per AOI
whose `lowres_date` cell lists the revisit dates in order (revisit i = entry i − --first-revisit).
Optional columns: `lon`, `lat`, `cloud_cover` (per revisit, 0..1 or percent).

Radiometry. The record keeps integers and `value_max` (the value that becomes 1.0):
* HR GeoTIFF -> uint16, value_max = 2**radiometry_depth − 1 (4095 for the default 12 bits); every
  pixel is clipped to that range, so the float the model sees is min(DN, 4095) / 4095.
* HR PNG -> uint8, value_max 255.
* LR GeoTIFF values are clipped to 2**radiometry_depth − 1 and rescaled into the HR's range (an
  8-bit HR gets LR · 255/4095); LR PNG values (0..255) likewise.

Geometry. The HR is resampled (antialiased bicubic) onto exactly `scale` × the LR grid, since the
native SPOT/S2 ratio (1.5 m vs 10 m) is not an integer; the HR gsd is then lr_gsd / scale and the HR
affine is rescaled to match. LR and HR are cut into aligned chips (HR chip = scale × LR chip); each
chip keeps `crs` and its own `transform`. An LR pixel that is 0 in every band is nodata (mask 0).
"""

from __future__ import annotations

import argparse
import csv
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from satdiffmoe.data.record import Scene
from satdiffmoe.errors import UserError

from .conversion import chip_scenes, finish, open_writer, write_units
from .dates import delta_days, find_dates, iso, parse_date
from .raster_io import nonzero_mask, read_raster, rescale, resize, scaled_transform
from .splits import normalise_split

VERSION = "1"
# band presets: (band names, HR band numbers in the SPOT rgbn tiff, LR band numbers in the S2 tiff).
# B2, B3, B4, B8 are bands 2, 3, 4, 8 in both the 12-band L2A and the 13-band L1C order.
BAND_PRESETS = {
    "true_color": (["R", "G", "B"], [1, 2, 3], [4, 3, 2]),
    "rgbn": (["R", "G", "B", "NIR"], [1, 2, 3, 4], [4, 3, 2, 8]),
}
ASPECT_TOLERANCE = 0.05  # relative; HR and LR footprints of one AOI must have the same shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="WorldStrat folder (see the module docstring)")
    parser.add_argument("--scale", type=int, default=4, help="HR size / LR size in the record (HR is resampled)")
    parser.add_argument("--lr-chip", type=int, default=32, help="LR chip side in pixels; HR chip = scale × it; 0 = whole AOI")
    parser.add_argument("--bands", choices=sorted(BAND_PRESETS), default="true_color", help="band selection")
    parser.add_argument("--level", choices=["L2A", "L1C"], default="L2A", help="Sentinel-2 product level")
    parser.add_argument("--hr-format", choices=["tiff", "png"], default="tiff", help="tiff = 12-bit rgbn, png = 8-bit RGB")
    parser.add_argument("--lr-format", choices=["tiff", "png"], default="tiff", help="tiff = 12/13-band S2, png = 8-bit RGB")
    parser.add_argument("--radiometry-depth", type=int, default=12, help="bits of the GeoTIFF values (value_max = 2**bits − 1)")
    parser.add_argument("--lr-gsd", type=float, default=10.0, help="LR ground sampling distance in m")
    parser.add_argument("--metadata", default="metadata.csv", help="dates CSV, relative to --root")
    parser.add_argument("--split-file", default="stratified_train_val_test_split.csv", help="official split CSV, relative to --root")
    parser.add_argument("--aoi-column", default="tile", help="AOI name column in both CSVs")
    parser.add_argument("--split-column", default="split", help="split column of the split CSV")
    parser.add_argument("--hr-date-column", default="highres_date")
    parser.add_argument("--lr-date-column", default="lowres_date")
    parser.add_argument("--revisit-column", default="revisit", help="revisit number column (one row per revisit)")
    parser.add_argument("--first-revisit", type=int, default=1, help="number of the first revisit file (<AOI>-1-...)")


@dataclass
class AoiDates:
    hr: datetime
    lr: dict[int, datetime]  # revisit number -> date
    cloud: dict[int, float]
    lon: float | None = None
    lat: float | None = None


def convert(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    if not root.is_dir():
        raise UserError(f"WorldStrat root {root} is not a folder; pass --root <folder with hr_dataset/ and lr_dataset/>")
    if args.hr_format == "png" and args.bands != "true_color":
        raise UserError("--hr-format png holds only RGB; use --bands true_color or --hr-format tiff")
    splits = _read_splits(root / args.split_file, args)
    dates = _read_dates(root / args.metadata, args)
    aois = sorted(p.name for p in (root / "hr_dataset").glob("*") if p.is_dir()) if (root / "hr_dataset").is_dir() else []
    aois = sorted(set(aois) | set(splits))
    if not aois:
        raise UserError(f"no AOIs: {root / 'hr_dataset'} has no AOI folders and {root / args.split_file} lists none")
    writer = open_writer(args, "worldstrat", VERSION)
    write_units(writer, aois, lambda aoi: aoi, lambda aoi: _aoi_scenes(root, aoi, splits, dates, args),
                args.skip_bad, desc="worldstrat")
    return finish(writer, {"value_max": _value_max(args), "scale": args.scale,
                           "bands": BAND_PRESETS[args.bands][0]})


def _value_max(args: argparse.Namespace) -> int:
    return 255 if args.hr_format == "png" else 2 ** args.radiometry_depth - 1


def _aoi_scenes(root: Path, aoi: str, splits: dict[str, str], dates: dict[str, AoiDates],
                args: argparse.Namespace) -> Iterator[tuple[Scene, str]]:
    if aoi not in splits:
        raise UserError(f"no split: AOI {aoi} is not in {root / args.split_file}")
    if aoi not in dates:
        raise UserError(f"no dates: AOI {aoi} has no row in {root / args.metadata}")
    names, hr_bands, lr_bands = BAND_PRESETS[args.bands]
    value_max = _value_max(args)
    dtype = np.uint8 if args.hr_format == "png" else np.uint16
    depth_max = 2 ** args.radiometry_depth - 1

    hr_path = root / "hr_dataset" / aoi / (f"{aoi}_rgb.png" if args.hr_format == "png" else f"{aoi}_rgbn.tiff")
    if not hr_path.is_file():
        raise UserError(f"missing HR: {hr_path} does not exist")
    hr = read_raster(hr_path, None if args.hr_format == "png" else hr_bands)
    hr_array = rescale(hr.array, 255 if args.hr_format == "png" else depth_max, value_max, dtype)

    revisits = _revisit_files(root, aoi, args)
    lr_arrays, lr_dts, lr_times, clouds = [], [], [], []
    aoi_dates = dates[aoi]
    for number, path in revisits:
        if number not in aoi_dates.lr:
            raise UserError(f"no dates: revisit {number} of {aoi} ({path.name}) has no date in {root / args.metadata}")
        lr = read_raster(path, None if args.lr_format == "png" else lr_bands).array
        if lr.shape[0] != len(names):
            raise UserError(f"band mismatch: {path} has {lr.shape[0]} bands, expected {len(names)} ({','.join(names)})")
        if lr_arrays and lr.shape != lr_arrays[0].shape:
            raise UserError(f"scale mismatch: {path} is {lr.shape[1:]} but {revisits[0][1].name} is {lr_arrays[0].shape[1:]}")
        lr_arrays.append(rescale(lr, 255 if args.lr_format == "png" else depth_max, value_max, dtype))
        lr_dts.append(delta_days(aoi_dates.lr[number], aoi_dates.hr))
        lr_times.append(iso(aoi_dates.lr[number]))
        clouds.append(aoi_dates.cloud.get(number))

    h, w = lr_arrays[0].shape[1:]
    big_h, big_w = hr_array.shape[1:]
    if big_h < h or big_w < w or abs((big_h / big_w) / (h / w) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"scale mismatch: HR {hr_path} is {big_h}×{big_w} but its LR revisits are {h}×{w}; "
                        "they must cover the same footprint")
    hr_array = resize(hr_array, (h * args.scale, w * args.scale))
    lr_stack = np.stack(lr_arrays)
    meta = {
        "source": "worldstrat", "aoi": aoi, "scale": args.scale, "bands": names, "value_max": value_max,
        "lr_dt": lr_dts, "hr_time": iso(aoi_dates.hr), "lr_times": lr_times,
        "gsd": args.lr_gsd / args.scale, "lr_gsd": args.lr_gsd, "level": args.level,
        "lon": aoi_dates.lon, "lat": aoi_dates.lat, "crs": hr.crs,
        "transform": scaled_transform(hr.transform, big_w / (w * args.scale), big_h / (h * args.scale)),
    }
    lr_mask = np.stack([nonzero_mask(lr) for lr in lr_stack])
    for scene in chip_scenes(aoi, hr_array, lr_stack, lr_mask, meta, args.lr_chip, cloud_cover=clouds):
        yield scene, splits[aoi]


def _revisit_files(root: Path, aoi: str, args: argparse.Namespace) -> list[tuple[int, Path]]:
    folder = root / "lr_dataset" / aoi / args.level
    suffix = "png" if args.lr_format == "png" else "tiff"
    pattern = re.compile(rf"^{re.escape(aoi)}-(\d+)-{args.level}_data\.{suffix}$")
    found = sorted((int(m.group(1)), p) for p in folder.glob(f"*.{suffix}") if (m := pattern.match(p.name)))
    if not found:
        raise UserError(f"missing LR: {folder} has no {aoi}-<i>-{args.level}_data.{suffix} revisits")
    return found


def _read_csv(path: Path, required: list[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise UserError(f"missing file: {path} does not exist; pass its location relative to --root")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in required if not rows or c not in rows[0]]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; name them with the --*-column options")
    return rows


def _read_splits(path: Path, args: argparse.Namespace) -> dict[str, str]:
    rows = _read_csv(path, [args.aoi_column, args.split_column])
    return {row[args.aoi_column]: normalise_split(row[args.split_column], f"{path} row {row[args.aoi_column]}")
            for row in rows}


def _read_dates(path: Path, args: argparse.Namespace) -> dict[str, AoiDates]:
    rows = _read_csv(path, [args.aoi_column, args.hr_date_column, args.lr_date_column])
    per_revisit = args.revisit_column in rows[0]
    by_aoi: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_aoi[row[args.aoi_column]].append(row)
    result = {}
    for aoi, aoi_rows in by_aoi.items():
        where = f"{path} ({aoi})"
        first = aoi_rows[0]
        if per_revisit:
            lr = {int(r[args.revisit_column]): parse_date(r[args.lr_date_column], where) for r in aoi_rows}
            cloud = {int(r[args.revisit_column]): _fraction(r.get("cloud_cover")) for r in aoi_rows}
        else:
            listed = find_dates(first[args.lr_date_column], where)
            lr = {i + args.first_revisit: d for i, d in enumerate(listed)}
            cloud = {}
        result[aoi] = AoiDates(hr=parse_date(first[args.hr_date_column], where), lr=lr,
                               cloud={k: v for k, v in cloud.items() if v is not None},
                               lon=_number(first.get("lon")), lat=_number(first.get("lat")))
    return result


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _fraction(text: str | None) -> float | None:
    value = _number(text)
    return None if value is None else (value / 100.0 if value > 1 else value)
