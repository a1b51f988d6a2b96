"""Plain GeoTIFF or PNG stacks -> shards: the documented way to bring any other sensor pair.

    satdiffmoe prepare stack --root RAW --out DIR [--bands 1,2,3] [--value-max 4095] [--lr-chip 32]

Expected raw layout, one folder per scene (the folder name is the scene id). Every image may be a
GeoTIFF (.tif/.tiff) or a PNG (.png, 8- or 16-bit; no georeference), as `satdiffmoe sample` accepts:

    RAW/<scene>/hr.tif               HR, C bands, uint8 or uint16, ideally georeferenced (or hr.png)
    RAW/<scene>/lr_<anything>.tif    one file per LR acquisition, same bands and dtype, H = scale × h
    RAW/<scene>/lr_<anything>_mask.tif   optional validity/cloud mask of that LR (nonzero = clear)
    RAW/<scene>/dates.csv            columns `file,date` (ISO), one row for the HR and one per LR file;
                                     optional column `cloud_cover` (0..1)
        or  RAW/<scene>/dates.yaml   a mapping file -> date, e.g. {hr.tif: 2020-06-01, lr_a.png: 2020-05-20}
    RAW/splits.csv                   optional, columns `scene,split` (train/val/test)

The scale is the HR/LR size ratio and must be the same integer for every LR and both axes (or equal
--scale when given). Scenes not listed in splits.csv go to train/val/test by a deterministic hash of
the scene id (--val-frac, --test-frac). value_max defaults to the dtype's maximum (255 / 65535);
pass --value-max for e.g. 12-bit data in uint16 (4095; larger values are clipped). An LR pixel that
is 0 in every band and has no mask file is nodata. The HR `crs` and `transform` go into each chip.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import yaml

from satdiffmoe.data.record import Scene
from satdiffmoe.errors import UserError

from .conversion import chip_scenes, finish, open_writer, write_units
from .dates import delta_days, iso, parse_date
from .raster_io import nonzero_mask, read_raster, rescale
from .splits import hash_split, normalise_split

VERSION = "1"
SUFFIXES = (".tif", ".tiff", ".png")  # what satdiffmoe sample reads (sampling/image_io.py)


def _says_default(text: str) -> str:
    """Help that explains its own default: `prepare` uses ArgumentDefaultsHelpFormatter, which would
    append "(default: None)" unless the text mentions %(default); ".0s" formats it as nothing."""
    return text + "%(default).0s"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help=_says_default("folder with one sub-folder per scene"))
    parser.add_argument("--bands", default=None, help=_says_default("1-based bands to keep, e.g. 1,2,3 (default: all)"))
    parser.add_argument("--band-names", default=None,
                        help=_says_default("names stored in the record, e.g. R,G,B (default: b1, b2, ...)"))
    parser.add_argument("--value-max", type=int, default=None,
                        help=_says_default("value that means 1.0 (default: the dtype's maximum, 255 / 65535)"))
    parser.add_argument("--scale", type=int, default=None, help=_says_default("expected HR/LR size ratio (default: inferred)"))
    parser.add_argument("--lr-chip", type=int, default=0, help="LR chip side (HR chip = scale × it); 0 = whole scene")
    parser.add_argument("--gsd", type=float, default=None,
                        help=_says_default("HR ground sampling distance in m (default: from the HR affine)"))
    parser.add_argument("--split-file", default="splits.csv", help="scene,split CSV relative to --root (optional)")
    parser.add_argument("--val-frac", type=float, default=0.1, help="share of unlisted scenes hashed to val")
    parser.add_argument("--test-frac", type=float, default=0.1, help="share of unlisted scenes hashed to test")


def convert(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    if not root.is_dir():
        raise UserError(f"stack root {root} is not a folder; pass --root <folder with one folder per scene>")
    scenes = sorted(p for p in root.iterdir() if p.is_dir())
    if not scenes:
        raise UserError(f"no scenes: {root} has no scene folders (each with hr.tif|png, lr_*.tif|png, dates.csv)")
    splits = _read_splits(root / args.split_file)
    hash_split("check", args.val_frac, args.test_frac)  # reject bad fractions before any work
    writer = open_writer(args, "stack", VERSION)
    write_units(writer, scenes, lambda folder: folder.name,
                lambda folder: _folder_scenes(folder, splits, args), args.skip_bad, desc="stack")
    return finish(writer)


def _read_splits(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"scene", "split"} <= set(rows[0]):
        raise UserError(f"{path} must have columns scene,split; found {', '.join(rows[0])}")
    return {row["scene"]: normalise_split(row["split"], f"{path} ({row['scene']})") for row in rows}


def _read_dates(folder: Path) -> tuple[dict[str, datetime], dict[str, float]]:
    """file name -> date (and -> cloud cover) from dates.csv or dates.yaml."""
    csv_path, yaml_path = folder / "dates.csv", folder / "dates.yaml"
    if csv_path.is_file():
        with csv_path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if rows and not {"file", "date"} <= set(rows[0]):
            raise UserError(f"no dates: {csv_path} must have columns file,date")
        dates = {r["file"]: parse_date(r["date"], f"{csv_path} ({r['file']})") for r in rows}
        clouds = {r["file"]: float(r["cloud_cover"]) for r in rows if r.get("cloud_cover") not in (None, "")}
        return dates, clouds
    if yaml_path.is_file():
        try:
            mapping = yaml.safe_load(yaml_path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise UserError(f"unreadable file: {yaml_path} ({exc.__class__.__name__})") from None
        return {str(k): parse_date(v, f"{yaml_path} ({k})") for k, v in mapping.items()}, {}
    raise UserError(f"no dates: {folder} has neither dates.csv nor dates.yaml")


def _folder_scenes(folder: Path, splits: dict[str, str], args: argparse.Namespace) -> Iterator[tuple[Scene, str]]:
    hr_paths = [folder / f"hr{suffix}" for suffix in SUFFIXES if (folder / f"hr{suffix}").is_file()]
    if len(hr_paths) != 1:
        found = ", ".join(p.name for p in hr_paths)
        raise UserError(f"missing HR: {folder / 'hr.tif'} does not exist (nor hr.png)" if not hr_paths
                        else f"ambiguous HR: {folder} has {found}; keep one")
    hr_path = hr_paths[0]
    lr_paths = sorted(p for p in folder.glob("lr_*") if p.suffix.lower() in SUFFIXES and not p.stem.endswith("_mask"))
    if not lr_paths:
        raise UserError(f"missing LR: {folder} has no lr_*.tif or lr_*.png files")
    dates, clouds = _read_dates(folder)
    bands = [int(b) for b in args.bands.split(",")] if args.bands else None
    hr = read_raster(hr_path, bands)
    if hr.array.dtype not in (np.uint8, np.uint16):
        raise UserError(f"unsupported dtype: {hr_path} is {hr.array.dtype}; convert it to uint8/uint16 "
                        "(e.g. gdal_translate -ot UInt16 -scale)")
    value_max = args.value_max or int(np.iinfo(hr.array.dtype).max)
    scale = _scale(hr_path, hr.shape_hw, lr_paths[0], read_raster(lr_paths[0], bands).shape_hw, args.scale)
    lrs, masks = [], []
    for path in lr_paths:
        lr = read_raster(path, bands).array
        if lr.dtype != hr.array.dtype or lr.shape[0] != hr.array.shape[0]:
            raise UserError(f"band mismatch: {path} is {lr.shape[0]}×{lr.dtype}, {hr_path} is "
                            f"{hr.array.shape[0]}×{hr.array.dtype}; bands and dtype must match")
        _scale(hr_path, hr.shape_hw, path, lr.shape[1:], scale)
        lrs.append(rescale(lr, value_max, value_max, lr.dtype))
        masks.append(_lr_mask(path, lr))
    for name in [hr_path.name] + [p.name for p in lr_paths]:
        if name not in dates:
            raise UserError(f"no dates: {folder}/dates.* has no date for {name}")
    hr_time = dates[hr_path.name]
    meta = {
        "source": "stack", "scene": folder.name, "scale": scale, "value_max": value_max,
        "bands": args.band_names.split(",") if args.band_names else [f"b{b}" for b in (bands or range(1, hr.array.shape[0] + 1))],
        "lr_dt": [delta_days(dates[p.name], hr_time) for p in lr_paths],
        "hr_time": iso(hr_time), "lr_times": [iso(dates[p.name]) for p in lr_paths],
        "lr_files": [p.name for p in lr_paths],
        "gsd": args.gsd or (abs(hr.transform[0]) if hr.transform else None), "crs": hr.crs, "transform": hr.transform,
    }
    split = splits.get(folder.name) or hash_split(folder.name, args.val_frac, args.test_frac)
    cloud = [clouds.get(p.name) for p in lr_paths]
    hr_array = rescale(hr.array, value_max, value_max, hr.array.dtype)
    for scene in chip_scenes(folder.name, hr_array, np.stack(lrs), np.stack(masks), meta, args.lr_chip, cloud_cover=cloud):
        yield scene, split


def _scale(hr_path: Path, hr_hw: tuple[int, int], lr_path: Path, lr_hw: tuple[int, int],
           expected: int | None) -> int:
    """The integer HR/LR ratio, identical on both axes (and equal to `expected` when given)."""
    (big_h, big_w), (h, w) = hr_hw, tuple(lr_hw)
    ratio_ok = big_h % h == 0 and big_w % w == 0 and big_h // h == big_w // w
    scale = big_h // h if ratio_ok else 0
    if not ratio_ok or scale < 1 or (expected and scale != expected):
        want = f"{expected} × " if expected else "an integer multiple of "
        raise UserError(f"scale mismatch: {hr_path} is {big_h}×{big_w}, which is not {want}{lr_path} ({h}×{w})")
    return scale


def _lr_mask(path: Path, lr: np.ndarray) -> np.ndarray:
    candidates = [path.with_name(f"{path.stem}_mask{suffix}") for suffix in SUFFIXES]
    mask_path = next((p for p in candidates if p.is_file()), None)
    if mask_path is None:
        return nonzero_mask(lr)
    mask = read_raster(mask_path, [1]).array[0]
    if mask.shape != lr.shape[1:]:
        raise UserError(f"scale mismatch: mask {mask_path} is {mask.shape}, {path} is {lr.shape[1:]}")
    return (mask > 0).astype(np.uint8)
