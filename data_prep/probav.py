"""PROBA-V (ESA Kelvins challenge) -> shards: one single-band record per imgset, ×3 scale, Δt unknown.

    satdiffmoe prepare probav --root RAW --out DIR [--bands NIR RED] [--val-frac 0.1] [--test-frac 0.1]

Expected raw layout (the Kelvins "PROBA-V Super Resolution" release):

    RAW/<split>/<band>/imgsetXXXX/HR.png          384×384, 16-bit PNG holding 14-bit values
    RAW/<split>/<band>/imgsetXXXX/SM.png          HR status map (nonzero = valid pixel)
    RAW/<split>/<band>/imgsetXXXX/LR000.png ...   128×128, 16-bit PNG, one per revisit
    RAW/<split>/<band>/imgsetXXXX/QM000.png ...   LR quality map (nonzero = clear pixel)

<split> is `train` or `test`, <band> is `NIR` or `RED`. Records: channels 1, value_max 16383 (14 bit),
scale 3, QM -> lr_mask, SM -> hr_mask, Δt unknown (None: PROBA-V publishes no acquisition dates).

Splits: the Kelvins `test` split has no HR, so its imgsets are skipped and counted in manifest.json
("no HR"); an imgset in `test` that does have HR.png is written to test. Scenes of `train` go to
train/val/test by a deterministic hash of the record key with --val-frac / --test-frac, which is
where this converter's test split comes from when the official test HRs are not available.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from satdiffmoe.data.radiometry import Normalisation, record_normalisation
from satdiffmoe.data.record import Scene
from satdiffmoe.errors import UserError

from .conversion import chip_scenes, finish, open_writer, write_units
from .raster_io import read_raster
from .splits import hash_split

VERSION = "1"
VALUE_MAX = 2 ** 14 - 1
SCALE = 3
LR_NAME = re.compile(r"^LR(\d+)\.png$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", type=Path, required=True, help="Kelvins PROBA-V folder with train/ (and test/)")
    parser.add_argument("--bands", nargs="+", default=["NIR", "RED"], help="band folders to convert")
    parser.add_argument("--val-frac", type=float, default=0.1, help="fraction of train imgsets written to val")
    parser.add_argument("--test-frac", type=float, default=0.1, help="fraction of train imgsets written to test")
    parser.add_argument("--lr-chip", type=int, default=0, help="LR chip side (HR chip = 3 × it); 0 = whole imgset")
    parser.add_argument("--max-lr", type=int, default=0, help="keep the N clearest LRs per imgset (0 = all)")


def convert(args: argparse.Namespace) -> dict:
    root = Path(args.root)
    imgsets: list[tuple[str, str, Path]] = []
    for split_dir in ("train", "test"):
        for band in args.bands:
            imgsets += [(split_dir, band, p) for p in sorted((root / split_dir / band).glob("imgset*")) if p.is_dir()]
    if not imgsets:
        raise UserError(f"no imgsets: {root}/{{train,test}}/{{{','.join(args.bands)}}}/imgset* matched nothing; "
                        "pass --root <Kelvins PROBA-V folder>")
    writer = open_writer(args, "probav", VERSION)
    missing_hr = [item for item in imgsets if item[0] == "test" and not (item[2] / "HR.png").is_file()]
    for _split, band, folder in missing_hr:
        writer.skip(f"{band}-{folder.name}", "no HR: Kelvins test imgsets have no HR.png and cannot be scored")
    todo = [item for item in imgsets if item not in missing_hr]
    write_units(writer, todo, lambda item: f"{item[1]}-{item[2].name}",
                lambda item: _imgset_scenes(*item, args), args.skip_bad, desc="probav")
    normalisation = Normalisation.scale(VALUE_MAX, units="14-bit DN", description="PROBA-V L2 16-bit PNG values")
    return finish(writer, {"value_max": VALUE_MAX, "scale": SCALE,
                           "normalisation": {"value_max": VALUE_MAX, "record": record_normalisation(normalisation)}})


def _imgset_scenes(split_dir: str, band: str, folder: Path, args: argparse.Namespace) -> Iterator[tuple[Scene, str]]:
    key = f"{band}-{folder.name}"
    hr_path = folder / "HR.png"
    if not hr_path.is_file():
        raise UserError(f"missing HR: {hr_path} does not exist")
    hr = _read_png16(hr_path)
    hr_mask = _read_mask(folder / "SM.png", hr.shape[1:])
    lr_paths = sorted(p for p in folder.glob("LR*.png") if LR_NAME.match(p.name))
    if not lr_paths:
        raise UserError(f"missing LR: {folder} has no LR000.png ... files")
    lrs, masks = [], []
    for path in lr_paths:
        lr = _read_png16(path)
        if hr.shape[1:] != (lr.shape[1] * SCALE, lr.shape[2] * SCALE):
            raise UserError(f"scale mismatch: {hr_path} is {hr.shape[1:]} but {path} is {lr.shape[1:]}; PROBA-V is ×3")
        lrs.append(lr)
        masks.append(_read_mask(folder / f"QM{LR_NAME.match(path.name).group(1)}.png", lr.shape[1:]))
    if args.max_lr > 0:  # keep the clearest revisits, in their original order
        keep = sorted(np.argsort([-m.mean() for m in masks], kind="stable")[: args.max_lr])
        lrs, masks, lr_paths = [lrs[i] for i in keep], [masks[i] for i in keep], [lr_paths[i] for i in keep]
    meta = {"source": "probav", "imgset": folder.name, "scale": SCALE, "bands": [band], "value_max": VALUE_MAX,
            "lr_dt": [None] * len(lrs), "lr_files": [p.name for p in lr_paths], "gsd": 100.0, "lr_gsd": 300.0}
    split = "test" if split_dir == "test" else hash_split(key, args.val_frac, args.test_frac)
    for scene in chip_scenes(key, hr, np.stack(lrs), np.stack(masks), meta, args.lr_chip, hr_mask=hr_mask):
        yield scene, split


def _read_png16(path: Path) -> np.ndarray:
    array = read_raster(path).array
    if array.dtype != np.uint16 or array.shape[0] != 1:
        raise UserError(f"unreadable file: {path} is {array.dtype} with {array.shape[0]} channel(s); "
                        "PROBA-V images are single-channel 16-bit PNG")
    return np.minimum(array, VALUE_MAX)


def _read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    if not path.is_file():
        raise UserError(f"missing file: {path} (quality/status map) does not exist")
    mask = read_raster(path).array[0]
    if mask.shape != tuple(shape):
        raise UserError(f"scale mismatch: mask {path} is {mask.shape}, its image is {tuple(shape)}")
    return (mask > 0).astype(np.uint8)
