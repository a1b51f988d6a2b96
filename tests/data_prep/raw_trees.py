"""Raw trees that mimic each source layout (written with rasterio / PIL), and shard readers.

Images are tiny (LR 16×16) but have the real names, dtypes and band counts: float32 reflectance
Sentinel-2 L2A with 12 bands and CLM masks and uint16 SPOT `_ps.tiff` for WorldStrat, uint16 DN
Sentinel-2 with 13 bands, uint8 RGB JPEG/PNG, 16-bit PROBA-V PNG. Pixel values are constant per
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
WORLDSTRAT_AOIS = {"Landcover-769876": "train", "Amnesty POI-20-2-2": "val", "UNHCR-GRCs035302": "test"}
# S2 reflectance of B4, B3, B2 per revisit; 0.5 in B2 of revisit 1 is bright but within [0, 1]
WORLDSTRAT_LR_RGB = {1: (0.05, 0.06, 0.5), 2: (0.08, 0.09, 0.1)}


def s2_reflectance(values_rgb: tuple, size: int = 16, bands: int = 12) -> np.ndarray:
    """float32 L2A revisit: 12 bands B01..B08, B8A, B09, B11, B12; B4, B3, B2 (bands 4, 3, 2) hold `values_rgb`."""
    array = np.full((bands, size, size), 0.0007, dtype=np.float32)
    for value, band in zip(values_rgb, (4, 3, 2)):
        array[band - 1] = value
    return array


def write_channel_last_tiff(path: Path, array: np.ndarray) -> Path:
    """C×H×W uint8 -> a plain channel-last TIFF without georeference, under any suffix, like the
    tifffile.imwrite calls of WorldStrat's src/utils/convert_to_8bit_radiometry.py (save_to_files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.moveaxis(array, 0, -1)).save(path, format="TIFF")
    return path


def make_worldstrat_tree(tmp_path: Path) -> Path:
    """The release layout: three AOIs (one per official split), 2 revisits each, LR 16×16.

    HR `_ps.tiff` uint16 DN (R, G, B = 1000, 2000, 3000, i.e. 0.1, 0.2, 0.3 after /10000), 64×64 or
    80×80 (a non-integer ratio); `_rgbn.tiff` 32×32 R, G, B, NIR; 8-bit variants under hr_dataset/8bit/;
    LR float32 reflectance (WORLDSTRAT_LR_RGB) with CLM masks; metadata.csv with the AOI as an
    unnamed first column and one row per revisit (3 listed, 2 on disk); the split CSV with its
    integer index column.
    """
    root = tmp_path / "worldstrat"
    hr_size = dict(zip(WORLDSTRAT_AOIS, (64, 80, 64)))
    for aoi, size in hr_size.items():
        hr = np.zeros((3, size, size), dtype=np.uint16)
        hr[0], hr[1], hr[2] = 1000, 2000, 3000
        if aoi == "Landcover-769876":  # mark the HR block under LR chip (y=8, x=0) so chip alignment is testable
            hr[0, 32:64, 0:32] = 1111
        write_tif(root / "hr_dataset" / aoi / f"{aoi}_ps.tiff", hr, from_origin(500000, 4000000, 160 / size, 160 / size))
        rgbn = np.stack([np.full((32, 32), v, np.uint16) for v in (1000, 2000, 3000, 4000)])
        write_tif(root / "hr_dataset" / aoi / f"{aoi}_rgbn.tiff", rgbn, from_origin(500000, 4000000, 5, 5))
        write_channel_last_tiff(root / "hr_dataset" / "8bit" / aoi / f"{aoi}_ps_8bit.tiff",
                                np.full((3, size, size), 200, dtype=np.uint8))
        write_channel_last_tiff(root / "hr_dataset" / "8bit" / aoi / f"{aoi}_rgb_8bit.png",
                                np.full((3, 32, 32), 100, dtype=np.uint8))
        folder = root / "lr_dataset" / aoi / "L2A"
        for revisit, rgb in WORLDSTRAT_LR_RGB.items():
            lr = s2_reflectance(rgb)
            clm = np.zeros((1, 16, 16), dtype=np.float32)  # the downloader writes masks in the data dtype
            if revisit == 1:
                clm[0, :, :4] = 1  # clouds over the 4 left columns
            else:
                lr[:, :4, :] = 0  # nodata stripe -> masked
            write_tif(folder / f"{aoi}-{revisit}-L2A_data.tiff", lr, from_origin(500000, 4000000, 10, 10))
            write_tif(folder / f"{aoi}-{revisit}-CLM.tiff", clm, from_origin(500000, 4000000, 10, 10))
    with (root / "metadata.csv").open("w") as f:
        f.write(",n,lon,lat,lowres_date,highres_date,cloud_cover\n")
        for aoi in hr_size:
            for n, date, cloud in ((1, "2019-06-01", 0.4), (2, "2019-06-20", 12.0), (3, "2019-07-02", 0.0)):
                f.write(f"{aoi},{n},7.25,45.5,{date},2019-06-10,{cloud}\n")
    with (root / "stratified_train_val_test_split.csv").open("w") as f:
        f.write(",tile,IPCC Class,SMOD,source,joint_class,split\n")
        for index, (aoi, split) in enumerate(WORLDSTRAT_AOIS.items()):
            f.write(f"{1000 + index},{aoi},Settlement,23,{aoi.split('-')[0]},x/Settlement/23,{split}\n")
    return root


def make_fmow_tree(tmp_path: Path) -> Path:
    """Two locations (train, val); 2 RGB images each (40×48 JPEG) and 3 Sentinel images (13 bands uint16 DN,
    12×12; B4, B3, B2 = 1500, 1200, 1000); the Sentinel CSVs carry the release's image_path column."""
    root = tmp_path / "fmow"
    s2_rows = ["category,location_id,image_id,timestamp,polygon,image_path"]
    for split, loc in (("train", "0"), ("val", "7")):
        place = f"airport_{loc}"
        for k, stamp in ((0, "2017-03-10T10:00:00Z"), (1, "2018-01-01T12:00:00Z")):
            folder = root / "fmow-rgb" / split / "airport" / place
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((40, 48, 3), 128, dtype=np.uint8)).save(folder / f"{place}_{k}_rgb.jpg", quality=100)
            (folder / f"{place}_{k}_rgb.json").write_text(json.dumps({
                "timestamp": stamp, "gsd": 0.5, "cloud_cover": 12,  # percent
                "raw_location": "POLYGON ((10.0 50.0, 10.2 50.0, 10.2 50.2, 10.0 50.2, 10.0 50.0))"}))
        for k, stamp in ((0, "2017-03-01T10:00:00Z"), (1, "2017-03-20T10:00:00Z"), (2, "2017-12-25T12:00:00Z")):
            relative = f"fmow-sentinel/{split}/airport/{place}/{place}_{k}.tif"
            write_tif(root / relative, s2_stack((1500, 1200, 1000), size=12, bands=13), from_origin(0, 0, 10, 10))
            s2_rows.append(f"airport,{loc},{k},{stamp},POLYGON EMPTY,{relative}")
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
