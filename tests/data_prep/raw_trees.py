"""Raw trees that mimic each source layout (written with rasterio / PIL), and shard readers.

Images are tiny (LR 16×16) but have the real dtypes and band counts: uint16 12-bit Sentinel-2 with
12 bands, uint16 SPOT rgbn, uint8 RGB JPEG/PNG, 16-bit PROBA-V PNG. Pixel values are constant per
band (bicubic resizing keeps constants exact) or laid out in blocks so tests can check alignment.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
import webdataset as wds
from affine import Affine
from PIL import Image

from satdiffmoe.cli import main as satdiffmoe_main
from satdiffmoe.data.record import Scene, decode_scene

CRS = "EPSG:32631"


def from_origin(west: float, north: float, xsize: float, ysize: float) -> Affine:
    return Affine(xsize, 0.0, west, 0.0, -ysize, north)


def write_tif(path: Path, array: np.ndarray, transform=None, crs: str | None = CRS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                   dtype=array.dtype.name)
    if transform is not None:
        profile.update(transform=transform, crs=crs)
    with warnings.catch_warnings():  # writing a plain TIFF without a georeference is intended here
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
    return path


def write_png(path: Path, array: np.ndarray) -> Path:
    """C×H×W (C = 1 or 3) uint8/uint16 -> PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1)
    Image.fromarray(image).save(path)
    return path


def s2_stack(values_rgb: tuple, size: int = 16, bands: int = 12) -> np.ndarray:
    """A `bands`-band Sentinel-2 tile whose B4, B3, B2 (bands 4, 3, 2) hold `values_rgb`."""
    array = np.full((bands, size, size), 7, dtype=np.uint16)
    for value, band in zip(values_rgb, (4, 3, 2)):
        array[band - 1] = value
    return array


def run_prepare(*argv: str) -> int:
    """`satdiffmoe prepare ...` through the real CLI entry."""
    return satdiffmoe_main(["prepare", *map(str, argv)])


def read_split(out: Path, split: str) -> list[Scene]:
    """Every record of one split, decoded and validated (integer pixels, exact values)."""
    shards = sorted(str(p) for p in Path(out).glob(f"{split}-*.tar"))
    if not shards:
        return []
    return [decode_scene(sample) for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False)]


def manifest(out: Path) -> dict:
    return json.loads((Path(out) / "manifest.json").read_text())


# --------------------------------------------------------------------------------------------- trees
def make_worldstrat_tree(tmp_path: Path) -> Path:
    """Three AOIs (one per official split), 2 revisits each; LR 16×16, HR 64×64 or 80×80 (non-integer)."""
    root = tmp_path / "worldstrat"
    hr_size = {"AOI-A": 64, "AOI-B": 80, "AOI-C": 64}
    splits = {"AOI-A": "train", "AOI-B": "val", "AOI-C": "test"}
    for aoi, size in hr_size.items():
        hr = np.zeros((4, size, size), dtype=np.uint16)
        hr[0], hr[1], hr[2], hr[3] = 1000, 2000, 3000, 3500
        if aoi == "AOI-A":  # mark the HR block under LR chip (y=8, x=0) so chip alignment is testable
            hr[0, 32:64, 0:32] = 1111
        write_tif(root / "hr_dataset" / aoi / f"{aoi}_rgbn.tiff", hr, from_origin(500000, 4000000, 10 * 16 / size, 10 * 16 / size))
        write_png(root / "hr_dataset" / aoi / f"{aoi}_rgb.png", np.full((3, size, size), 200, dtype=np.uint8))
        for revisit, rgb in ((1, (500, 600, 5000)), (2, (800, 900, 1000))):
            lr = s2_stack(rgb)
            if revisit == 2:
                lr[:, :4, :] = 0  # nodata stripe -> masked
            write_tif(root / "lr_dataset" / aoi / "L2A" / f"{aoi}-{revisit}-L2A_data.tiff", lr,
                      from_origin(500000, 4000000, 10, 10))
            write_png(root / "lr_dataset" / aoi / "L2A" / f"{aoi}-{revisit}-L2A_data.png",
                      np.full((3, 16, 16), 51 * revisit, dtype=np.uint8))
    with (root / "metadata.csv").open("w") as f:
        f.write("tile,lat,lon,highres_date,lowres_date\n")
        for aoi in hr_size:
            f.write(f"{aoi},45.5,7.25,2019-06-10,\"['2019-06-01', '2019-06-20']\"\n")
    with (root / "stratified_train_val_test_split.csv").open("w") as f:
        f.write("tile,split\n" + "".join(f"{aoi},{split}\n" for aoi, split in splits.items()))
    return root


def make_fmow_tree(tmp_path: Path) -> Path:
    """Two locations (train, val); 2 RGB images each (40×48 JPEG) and 3 Sentinel images (13 bands, 12×12)."""
    root = tmp_path / "fmow"
    s2_rows = ["category,location_id,image_id,timestamp,polygon"]
    for split, loc in (("train", "0"), ("val", "7")):
        place = f"airport_{loc}"
        for k, stamp in ((0, "2017-03-10T10:00:00Z"), (1, "2018-01-01T12:00:00Z")):
            folder = root / "fmow-rgb" / split / "airport" / place
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((40, 48, 3), 128, dtype=np.uint8)).save(folder / f"{place}_{k}_rgb.jpg", quality=100)
            (folder / f"{place}_{k}_rgb.json").write_text(json.dumps({
                "timestamp": stamp, "gsd": 0.5, "cloud_cover": 0,
                "raw_location": "POLYGON ((10.0 50.0, 10.2 50.0, 10.2 50.2, 10.0 50.2, 10.0 50.0))"}))
        for k, stamp in ((0, "2017-03-01T10:00:00Z"), (1, "2017-03-20T10:00:00Z"), (2, "2017-12-25T12:00:00Z")):
            write_tif(root / "fmow-sentinel" / split / "airport" / place / f"{place}_{k}.tif",
                      s2_stack((1500, 3000, 6000), size=12, bands=13), from_origin(0, 0, 10, 10))
            s2_rows.append(f"airport,{loc},{k},{stamp},POLYGON EMPTY")
    for split in ("train", "val"):
        (root / "fmow-sentinel" / f"{split}.csv").write_text("\n".join(
            r for r in s2_rows if r.startswith("category") or r.split(",")[1] == ("0" if split == "train" else "7")) + "\n")
    return root


def make_probav_tree(tmp_path: Path) -> Path:
    """Kelvins layout: 4 train imgsets (NIR) with HR 48×48 / 3 LR 16×16, and 1 test imgset without HR."""
    root = tmp_path / "probav"
    for split, name in [("train", f"imgset{i:04d}") for i in range(4)] + [("test", "imgset1160")]:
        folder = root / split / "NIR" / name
        if split == "train":
            write_png(folder / "HR.png", np.full((1, 48, 48), 12000, dtype=np.uint16))
            status = np.full((1, 48, 48), 255, dtype=np.uint8)
            status[0, :6] = 0  # the top 6 HR rows are invalid
            write_png(folder / "SM.png", status)
        for i in range(3):
            write_png(folder / f"LR{i:03d}.png", np.full((1, 16, 16), 1000 * (i + 1), dtype=np.uint16))
            quality = np.full((1, 16, 16), 255, dtype=np.uint8)
            quality[0, :, : 4 * i] = 0  # LR i has 4·i cloudy columns
            write_png(folder / f"QM{i:03d}.png", quality)
    return root


def make_stack_tree(tmp_path: Path) -> Path:
    """Three scenes of a 12-bit 2-band sensor pair (HR 32×32, LR 8×8, ×4); scene `b` is val by splits.csv."""
    root = tmp_path / "stack"
    for scene in ("a", "b", "c"):
        folder = root / scene
        write_tif(folder / "hr.tif", np.stack([np.full((32, 32), 4000, np.uint16), np.full((32, 32), 100, np.uint16)]),
                  from_origin(300000, 5000000, 2.0, 2.0))
        write_tif(folder / "lr_early.tif", np.stack([np.full((8, 8), 4500, np.uint16), np.full((8, 8), 200, np.uint16)]),
                  from_origin(300000, 5000000, 8.0, 8.0))
        write_tif(folder / "lr_late.tif", np.stack([np.full((8, 8), 300, np.uint16), np.full((8, 8), 400, np.uint16)]),
                  from_origin(300000, 5000000, 8.0, 8.0))
        mask = np.ones((1, 8, 8), np.uint8)
        mask[0, :2] = 0
        write_tif(folder / "lr_late_mask.tif", mask, from_origin(300000, 5000000, 8.0, 8.0))
        (folder / "dates.csv").write_text("file,date\nhr.tif,2021-07-01\nlr_early.tif,2021-06-21\nlr_late.tif,2021-07-04\n")
    (root / "splits.csv").write_text("scene,split\na,train\nb,val\nc,test\n")
    return root
