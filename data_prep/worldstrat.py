"""WorldStrat -> shards: one SPOT HR image and its Sentinel-2 revisits per AOI, cut into aligned chips.

    satdiffmoe prepare worldstrat --root RAW --out DIR [--scale 4] [--lr-chip 32] [--hr-product ps]

Raw layout: the public release (Zenodo 6810792 / Kaggle), as WorldStrat's own code reads it.
Evidence is named as repository file and approximate line (worldstrat/worldstrat at 51cdb1c):

    RAW/metadata.csv
        one row per revisit; the first column is the AOI and has no header (pandas index:
        `src/datasets.py` ~136 `pd.read_csv(METADATA_PATH, index_col=0)`, ~200 `metadata.loc[aoi]`);
        columns `n` (the revisit number in the file names, `dataset_generation/SentinelDownloader.py`
        `download_revisit`: f"{revisit.name}-{revisit.n}"), `lowres_date`, `highres_date` (YYYY-MM-DD),
        `cloud_cover` (percent, Sentinel Hub catalogue value), `lon`, `lat`
    RAW/stratified_train_val_test_split.csv
        header `,tile,IPCC Class,SMOD,source,joint_class,split`: an integer index, then the AOI in
        `tile` and train/val/test in `split` (`pretrained_model/stratified_train_val_test_split.csv` line 1)
    RAW/hr_dataset/<AOI>/<AOI>_ps.tiff        SPOT 6/7 pansharpened RGB, 1.5 m, uint16, bands 1-3 = R,G,B
                                              (`src/datasets.py` ~1510 "hr": SPOT_RGB_BANDS, ~1667
                                              `hr_postfix = "_ps.tiff"`; `src/datasources.py` ~88)
    RAW/hr_dataset/<AOI>/<AOI>_rgbn.tiff      SPOT multispectral R,G,B,NIR at 6 m (--hr-product rgbn)
    RAW/hr_dataset/8bit/<AOI>/<AOI>_ps_8bit.tiff, <AOI>_rgb_8bit.png
                                              the 8-bit variants (`src/utils/convert_to_8bit_radiometry.py`
                                              ~265 `save_to_files`; both written by tifffile, channel-last,
                                              without georeference: the ".png" holds TIFF bytes, which
                                              Pillow opens by content)
    RAW/lr_dataset/<AOI>/L2A/<AOI>-<n>-L2A_data.tiff
                                              Sentinel-2 L2A revisit n: float32 reflectance (about 0..1),
                                              12 bands B01..B08, B8A, B09, B11, B12 (`SentinelDownloader.py`
                                              `set_bands`; `src/datasources.py` S2_ALL_12BANDS true_color
                                              = [4, 3, 2]); L1C (--level L1C) adds B10: 13 bands
    RAW/lr_dataset/<AOI>/L2A/<AOI>-<n>-CLM.tiff
                                              cloud mask of revisit n (`src/datasets.py` ~1530 "lrc":
                                              "-CLM.tiff"): 0 clear, 1 cloud, 255 no data
    RAW/lr_dataset/<AOI>/L2A/<AOI>-<n>-dataMask.tiff   optional, 1 = valid (same downloader)

`hr_dataset/12bit/<AOI>/` is accepted in place of `hr_dataset/<AOI>/` (the folder `src/datasets.py`
`set_subfolders_for_roots_JIF` names). The AOIs converted are the split file's `tile`s.

Radiometry. The record holds integers with value_max = 10000 for the 16-bit HR products and 255 for
the 8-bit ones, so that value / value_max is WorldStrat's own scaling: SPOT DN / 10000, clamped to
[0, 1] (`src/datasources.py` ~90 SPOT_MAX_EXPECTED_VALUE_12_BIT = 10000; `src/datasets.py` ~1787
`.clamp(min=0, max=1)`), and Sentinel-2 reflectance (float, or integer DN / --reflectance-scale) on the
same 0..1 scale. An 8-bit HR is that [0, 1] value × 255 (`convert_to_8bit_radiometry.py` converts
with ToPILImage), so the LR is mapped the same way. Every raster goes through
`data_prep/radiometry.quantise`: one that is empty, clips more than --max-clipped, or is zeroed or made
constant by the conversion is refused (or skipped with --skip-bad), and what was clipped is recorded.

Geometry. The HR is resampled (antialiased bicubic, before quantising, so it never leaves
[0, value_max]) onto exactly `scale` × the LR grid, since the native ratio (10 m / 1.5 m ≈ 6.7) is not
an integer; the HR gsd is then lr_gsd / scale and the HR affine is rescaled to match. LR pixels are
masked (lr_mask 0) where CLM is not 0 (--cloud-mask clm), dataMask is 0, a band is NaN, or all
bands are 0. `cloud_cover` is then the chip's masked fraction; the CSV's scene value (percent / 100)
is kept as `scene_cloud_cover`.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from satdiffmoe.data.radiometry import Normalisation, record_normalisation
from satdiffmoe.data.record import Scene
from satdiffmoe.errors import UserError

from .conversion import chip_scenes, finish, open_writer, write_units
from .dates import delta_days, iso, parse_date
from .radiometry import finite_pixels, quantise, summarise
from .raster_io import nonzero_mask, read_raster, resize, scaled_transform
from .splits import normalise_split

VERSION = "2"
# band presets: (band names, LR band numbers); B2, B3, B4, B8 are bands 2, 3, 4, 8 in both the
# 12-band L2A and the 13-band L1C order (B8A and B10 come after B8)
BAND_PRESETS = {"true_color": (["R", "G", "B"], [4, 3, 2]), "rgbn": (["R", "G", "B", "NIR"], [4, 3, 2, 8])}
# HR products: (folder under hr_dataset/ ("" = the AOI folder itself), file suffix, value_max)
HR_PRODUCTS = {
    "ps": ("", "_ps.tiff", 10000),
    "rgbn": ("", "_rgbn.tiff", 10000),
    "ps_8bit": ("8bit", "_ps_8bit.tiff", 255),
    "rgb_8bit": ("8bit", "_rgb_8bit.png", 255),
}
SPOT_MAX = 10000  # SPOT DN that WorldStrat maps to 1.0 (src/datasources.py SPOT_MAX_EXPECTED_VALUE_12_BIT)
CLM_CLEAR = 0
ASPECT_TOLERANCE = 0.05  # relative; HR and LR footprints of one AOI must have the same shape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="WorldStrat folder (see the module docstring)")
    parser.add_argument("--scale", type=int, default=4, help="HR size / LR size in the record (HR is resampled)")
    parser.add_argument("--lr-chip", type=int, default=32, help="LR chip side in pixels; HR chip = scale × it; 0 = whole AOI")
    parser.add_argument("--bands", choices=sorted(BAND_PRESETS), default="true_color",
                        help="true_color = R,G,B (S2 B4,B3,B2); rgbn adds NIR (S2 B8) and needs --hr-product rgbn")
    parser.add_argument("--hr-product", choices=sorted(HR_PRODUCTS), default="ps",
                        help="ps = <AOI>_ps.tiff pansharpened 1.5 m RGB (what WorldStrat trains on); rgbn = 6 m "
                        "R,G,B,NIR; ps_8bit / rgb_8bit = the 8-bit variants under hr_dataset/8bit/")
    parser.add_argument("--level", choices=["L2A", "L1C"], default="L2A", help="Sentinel-2 product level")
    parser.add_argument("--cloud-mask", choices=["clm", "none"], default="clm",
                        help="clm = mask pixels where <AOI>-<n>-CLM.tiff is not 0 (when the file exists)")
    parser.add_argument("--reflectance-scale", type=float, default=10000.0,
                        help="integer LR values are reflectance × this (Sentinel-2 DN); float LRs are reflectance")
    parser.add_argument("--lr-gsd", type=float, default=10.0, help="LR ground sampling distance in m")
    parser.add_argument("--metadata", default="metadata.csv", help="per-revisit CSV, relative to --root")
    parser.add_argument("--split-file", default="stratified_train_val_test_split.csv", help="official split CSV, relative to --root")
    parser.add_argument("--metadata-aoi-column", default="", help="AOI column of the metadata CSV ('' = its first column)")
    parser.add_argument("--split-aoi-column", default="tile", help="AOI column of the split CSV")
    parser.add_argument("--split-column", default="split", help="split column of the split CSV")
    parser.add_argument("--revisit-column", default="n", help="revisit number column of the metadata CSV")
    parser.add_argument("--hr-date-column", default="highres_date")
    parser.add_argument("--lr-date-column", default="lowres_date")
    parser.add_argument("--cloud-column", default="cloud_cover", help="per-revisit cloud cover in percent")


@dataclass
class AoiDates:
    hr: datetime
    lr: dict[int, datetime] = field(default_factory=dict)  # revisit number -> date
    cloud: dict[int, float] = field(default_factory=dict)  # revisit number -> fraction 0..1
    lon: float | None = None
    lat: float | None = None


def convert(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    if not root.is_dir():
        raise UserError(f"WorldStrat root {root} is not a folder; pass --root <folder with hr_dataset/ and lr_dataset/>")
    if args.bands == "rgbn" and args.hr_product != "rgbn":
        raise UserError(f"--hr-product {args.hr_product} holds only R,G,B; use --bands true_color or --hr-product rgbn")
    splits = _read_splits(root / args.split_file, args)
    dates = _read_dates(root / args.metadata, args)
    aois = sorted(splits)
    if not aois:
        raise UserError(f"no AOIs: {root / args.split_file} lists none")
    writer = open_writer(args, "worldstrat", VERSION)
    write_units(writer, aois, lambda aoi: aoi, lambda aoi: _aoi_scenes(root, aoi, splits, dates, args),
                args.skip_bad, desc="worldstrat")
    value_max = HR_PRODUCTS[args.hr_product][2]
    return finish(writer, {"value_max": value_max, "scale": args.scale, "bands": BAND_PRESETS[args.bands][0],
                           "normalisation": _normalisation(args, value_max)})


def _normalisation(args: argparse.Namespace, value_max: int) -> dict:
    """How a record value relates to physical units (the inverse a user applies to outputs)."""
    return {
        "value_max": value_max,
        "hr": f"SPOT DN / {SPOT_MAX} clamped to [0, 1], × {value_max} (WorldStrat's own HR scaling)"
        if value_max == 10000 else "WorldStrat 8-bit product (SPOT DN / 10000 clamped to [0, 1], × 255)",
        "lr": f"Sentinel-2 {args.level} reflectance clamped to [0, 1], × {value_max} (integer inputs: DN / "
        f"{args.reflectance_scale:g} first)",
        "to_reflectance": f"value / {value_max}",
        # both rasters are reflectance 0..1 in the record (data/radiometry.py; the inverse on outputs)
        "record": record_normalisation(
            Normalisation.scale(value_max, 1.0, "reflectance", f"SPOT DN / {SPOT_MAX}, clamped to [0, 1]"),
            Normalisation.scale(value_max, 1.0, "reflectance", f"Sentinel-2 {args.level} reflectance, clamped to [0, 1]")),
    }


def _hr_path(root: Path, aoi: str, product: str) -> Path:
    folder, suffix, _ = HR_PRODUCTS[product]
    candidates = [root / "hr_dataset" / folder / aoi / f"{aoi}{suffix}"] if folder else [
        root / "hr_dataset" / aoi / f"{aoi}{suffix}", root / "hr_dataset" / "12bit" / aoi / f"{aoi}{suffix}"]
    for path in candidates:
        if path.is_file():
            return path
    raise UserError(f"missing HR: {candidates[0]} does not exist")


def _aoi_scenes(root: Path, aoi: str, splits: dict[str, str], dates: dict[str, AoiDates],
                args: argparse.Namespace) -> Iterator[tuple[Scene, str]]:
    if aoi not in dates:
        raise UserError(f"no dates: AOI {aoi} has no row in {root / args.metadata}")
    names, lr_bands = BAND_PRESETS[args.bands]
    value_max = HR_PRODUCTS[args.hr_product][2]
    dtype = np.uint8 if value_max == 255 else np.uint16
    hr_path = _hr_path(root, aoi, args.hr_product)
    hr = read_raster(hr_path, list(range(1, len(names) + 1)))

    revisits = _revisit_files(root, aoi, args)
    aoi_dates = dates[aoi]
    lr_arrays, lr_masks, lr_stats, numbers = [], [], [], []
    for number, path in revisits:
        if number not in aoi_dates.lr:
            raise UserError(f"no dates: revisit {number} of {aoi} ({path.name}) has no row in {root / args.metadata}")
        raw = read_raster(path, lr_bands).array
        if lr_arrays and raw.shape != lr_arrays[0].shape:
            raise UserError(f"scale mismatch: {path} is {raw.shape[1:]} but {revisits[0][1].name} is {lr_arrays[0].shape[1:]}")
        # float = reflectance (WorldStrat's L2A files); integer = DN, reflectance × --reflectance-scale
        scale = value_max if np.issubdtype(raw.dtype, np.floating) else value_max / args.reflectance_scale
        array, stats = quantise(raw, scale, value_max, dtype, f"LR {path}", args.max_clipped)
        lr_arrays.append(array)
        lr_stats.append(stats)
        lr_masks.append(_lr_mask(raw, path, aoi, number, args))
        numbers.append(number)

    h, w = lr_arrays[0].shape[1:]
    big_h, big_w = hr.shape_hw
    if big_h < h or big_w < w or abs((big_h / big_w) / (h / w) - 1) > ASPECT_TOLERANCE:
        raise UserError(f"scale mismatch: HR {hr_path} is {big_h}×{big_w} but its LR revisits are {h}×{w}; "
                        "they must cover the same footprint")
    # resample in float, then quantise: the record can then never exceed value_max
    hr_float = resize(hr.array.astype(np.float32), (h * args.scale, w * args.scale))
    hr_scale = 1.0 if value_max == 255 else value_max / SPOT_MAX
    hr_array, hr_stats = quantise(hr_float, hr_scale, value_max, dtype, f"HR {hr_path}", args.max_clipped)
    use_clm = args.cloud_mask == "clm" and any(_clm_path(root, aoi, n, args).is_file() for n in numbers)
    meta = {
        "source": "worldstrat", "aoi": aoi, "scale": args.scale, "bands": names, "value_max": value_max,
        "lr_dt": [delta_days(aoi_dates.lr[n], aoi_dates.hr) for n in numbers],
        "hr_time": iso(aoi_dates.hr), "lr_times": [iso(aoi_dates.lr[n]) for n in numbers], "revisits": numbers,
        "gsd": args.lr_gsd / args.scale, "lr_gsd": args.lr_gsd, "level": args.level, "hr_product": args.hr_product,
        "scene_cloud_cover": [aoi_dates.cloud.get(n) for n in numbers],
        "lon": aoi_dates.lon, "lat": aoi_dates.lat, "crs": hr.crs,
        "transform": scaled_transform(hr.transform, big_w / (w * args.scale), big_h / (h * args.scale)),
        "radiometry": {"hr": summarise([hr_stats]), "lr": summarise(lr_stats)},
    }
    clouds = None if use_clm else [aoi_dates.cloud.get(n) for n in numbers]
    for scene in chip_scenes(aoi, hr_array, np.stack(lr_arrays), np.stack(lr_masks), meta, args.lr_chip,
                             cloud_cover=clouds):
        yield scene, splits[aoi]


def _clm_path(root: Path, aoi: str, number: int, args: argparse.Namespace) -> Path:
    return root / "lr_dataset" / aoi / args.level / f"{aoi}-{number}-CLM.tiff"


def _lr_mask(raw: np.ndarray, path: Path, aoi: str, number: int, args: argparse.Namespace) -> np.ndarray:
    """H×W uint8: 1 where the revisit is finite, not all-zero, clear in CLM and valid in dataMask."""
    valid = finite_pixels(raw) & nonzero_mask(np.nan_to_num(raw)).astype(bool)
    folder = path.parent
    for name, keep in (("CLM", lambda m: m == CLM_CLEAR), ("dataMask", lambda m: m == 1)):
        if name == "CLM" and args.cloud_mask != "clm":
            continue
        mask_path = folder / f"{aoi}-{number}-{name}.tiff"
        if mask_path.is_file():
            mask = read_raster(mask_path, [1]).array[0]
            if mask.shape != raw.shape[1:]:
                raise UserError(f"scale mismatch: {mask_path} is {mask.shape} but {path.name} is {raw.shape[1:]}")
            valid &= keep(mask)
    return valid.astype(np.uint8)


def _revisit_files(root: Path, aoi: str, args: argparse.Namespace) -> list[tuple[int, Path]]:
    folder = root / "lr_dataset" / aoi / args.level
    pattern = re.compile(rf"^{re.escape(aoi)}-(\d+)-{args.level}_data\.tiff?$")
    found = sorted((int(m.group(1)), p) for p in folder.glob("*.tif*") if (m := pattern.match(p.name)))
    if not found:
        raise UserError(f"missing LR: {folder} has no {aoi}-<n>-{args.level}_data.tiff revisits")
    return found


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    if not path.is_file():
        raise UserError(f"missing file: {path} does not exist; pass its location relative to --root")
    with path.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if row]
    if not rows:
        raise UserError(f"{path} is empty")
    return rows[0], rows[1:]


def _column(header: list[str], name: str, path: Path, option: str) -> int:
    if name not in header:
        shown = ", ".join(repr(c) for c in header)
        raise UserError(f"{path} lacks column {name!r} (its columns: {shown}); name it with {option}")
    return header.index(name)


def _read_splits(path: Path, args: argparse.Namespace) -> dict[str, str]:
    header, rows = _read_csv(path)
    aoi = _column(header, args.split_aoi_column, path, "--split-aoi-column")
    split = _column(header, args.split_column, path, "--split-column")
    return {row[aoi]: normalise_split(row[split], f"{path} row {row[aoi]}") for row in rows}


def _read_dates(path: Path, args: argparse.Namespace) -> dict[str, AoiDates]:
    header, rows = _read_csv(path)
    aoi = _column(header, args.metadata_aoi_column, path, "--metadata-aoi-column") if args.metadata_aoi_column else 0
    revisit = _column(header, args.revisit_column, path, "--revisit-column")
    hr_date = _column(header, args.hr_date_column, path, "--hr-date-column")
    lr_date = _column(header, args.lr_date_column, path, "--lr-date-column")
    optional = {name: header.index(name) for name in (args.cloud_column, "lon", "lat") if name in header}
    result: dict[str, AoiDates] = {}
    for row in rows:
        where = f"{path} ({row[aoi]}, {args.revisit_column}={row[revisit]})"
        try:
            number = int(float(row[revisit]))
        except ValueError:
            raise UserError(f"no dates: {where}: revisit number {row[revisit]!r} is not an integer") from None
        entry = result.setdefault(row[aoi], AoiDates(
            hr=parse_date(row[hr_date], where),
            lon=_number(row, optional.get("lon")), lat=_number(row, optional.get("lat"))))
        entry.lr[number] = parse_date(row[lr_date], where)
        cloud = _number(row, optional.get(args.cloud_column))
        if cloud is not None:
            entry.cloud[number] = round(cloud / 100.0, 6)  # the catalogue's cloud cover is in percent
    return result


def _number(row: list[str], index: int | None) -> float | None:
    if index is None or index >= len(row) or row[index] in ("", "nan", "NaN"):
        return None
    try:
        return float(row[index])
    except ValueError:
        return None
