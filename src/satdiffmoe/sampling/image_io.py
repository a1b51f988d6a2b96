"""Reading users' LR images and writing HR outputs: GeoTIFF through rasterio, PNG through PIL.

Pixels become float32 C×H×W in [-1, 1] like the training data: integer images are divided by their
dtype's maximum (uint8 255, uint16 65535) unless `value_max` says otherwise (e.g. 4095 for 12-bit
data stored as uint16); float images are taken to be in [0, 1]. `normalise` replaces that division
with any map of the file's raw values (e.g. a training manifest's `Normalisation.forward`), and
`write_values` writes values already in their final units. A GeoTIFF's CRS and affine transform
travel with the image; the output transform is the input one with pixels `scale` times smaller.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import Affine

from ..data.png import read_png
from ..errors import UserError

GEOTIFF = (".tif", ".tiff")
PNG = (".png",)


@dataclass
class Raster:
    pixels: np.ndarray  # float32 C×H×W in [-1, 1]
    crs: Any = None
    transform: Affine | None = None
    value_max: float = 255.0
    valid: np.ndarray | None = None  # H×W bool, False where a GeoTIFF holds its nodata value (None: all valid)
    floating: bool = False  # the file held float values: outputs `like` it are written as float32


def _value_max(dtype: np.dtype, value_max: float | None) -> float:
    if value_max:
        return float(value_max)
    if np.issubdtype(dtype, np.integer):
        return float(np.iinfo(dtype).max)
    return 1.0


def read_raster(path: str | Path, value_max: float | None = None,
                normalise: Callable[[np.ndarray], np.ndarray] | None = None) -> Raster:
    """`normalise` (raw C×H×W values -> [-1, 1]) replaces the division by `value_max` when given."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"input image not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in GEOTIFF:
            with rasterio.open(path) as source:
                data, crs, transform, nodata = source.read(), source.crs, source.transform, source.nodata
        elif suffix in PNG:
            data, crs, transform, nodata = read_png(path), None, None, None  # not PIL: 16-bit RGB as 8-bit
        else:
            raise UserError(f"{path}: unsupported format {suffix!r}; use GeoTIFF (.tif) or PNG (.png)")
    except (rasterio.errors.RasterioIOError, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    valid = None
    if nodata is not None:  # no data is not a dark pixel: it goes to the validity mask, as clouds do
        missing = (np.isnan(data) if np.isnan(nodata) else data == nodata).any(0)
        valid = ~missing
        data = np.where(missing, np.zeros((), data.dtype), data)
    top = _value_max(data.dtype, value_max)
    pixels = data.astype(np.float32) / top * 2 - 1 if normalise is None else normalise(data).astype(np.float32)
    if not np.isfinite(pixels).all():
        raise UserError(f"{path} has non-finite pixel values (NaN/inf); fill or mask them first")
    return Raster(pixels=pixels, crs=crs, transform=transform, value_max=top, valid=valid,
                  floating=bool(np.issubdtype(data.dtype, np.floating)))


def read_mask(path: str | Path) -> np.ndarray:
    """A validity mask image -> H×W float32, 1 = clear (any non-zero value)."""
    raster = read_raster(path, value_max=1.0)
    return ((raster.pixels[0] + 1) / 2 > 0).astype(np.float32)


def write_raster(path: str | Path, pixels: np.ndarray, like: Raster | None = None, scale: int = 1,
                 value_max: float = 255.0, as_float: bool = False, together: list | None = None) -> Path:
    """Write C×H×W pixels: [-1, 1] images as integers in `value_max` units, or raw float32 maps.

    The file appears complete or not at all: it is written beside its target and renamed, so a full
    disk or a kill leaves the previous file (or none), never a 0-byte or truncated image. With
    `together` (from `output_set`) the rename waits for the set's other files.
    """
    return _write_whole(Path(path), lambda partial: _write_raster(partial, pixels, like, scale, value_max, as_float),
                        together)


def write_values(path: str | Path, values: np.ndarray, like: Raster | None = None, scale: int = 1,
                 together: list | None = None) -> Path:
    """Write C×H×W values as they are (uint8, uint16 or float32), whole or not at all like write_raster.

    For outputs already in their final units (an HR normalisation's inverse); PNG holds integers only.
    """
    if np.issubdtype(values.dtype, np.floating) and Path(path).suffix.lower() in PNG:
        raise UserError(f"{path}: PNG cannot hold float values; write a .tif instead")
    return _write_whole(Path(path), lambda partial: _write_data(partial, values, like, scale), together)


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial{path.suffix}")  # same suffix: the format follows it


def check_can_write(path: str | Path) -> None:
    """Create and remove the file's partial name: a real write, which `os.access` is not (root passes
    it everywhere, and a read-only or pseudo filesystem still refuses the file)."""
    partial = partial_path(Path(path))
    try:
        partial.open("wb").close()
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}; choose a writable output folder") from None
    partial.unlink(missing_ok=True)


@contextmanager
def output_set() -> Iterator[list]:
    """Files written with `together=` the yielded list appear together or not at all: each is written
    whole to its partial name, and all are renamed only once every one was (a failing uncertainty map
    no longer leaves the SR image written)."""
    pending: list[tuple[Path, Path]] = []
    try:
        yield pending
        for partial, path in pending:
            os.replace(partial, path)
    except OSError as exc:
        raise UserError(f"cannot write {exc.filename or 'the outputs'}: {exc.strerror or exc}") from None
    finally:
        for partial, _ in pending:
            partial.unlink(missing_ok=True)


def _write_whole(path: Path, write: Callable[[Path], None], together: list | None = None) -> Path:
    partial = partial_path(path)
    try:
        write(partial)
        if together is None:
            os.replace(partial, path)
        else:
            together.append((partial, path))
    except (OSError, rasterio.errors.RasterioError) as exc:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                        "free some space or choose another output folder") from None
    return path


def _write_raster(path: Path, pixels: np.ndarray, like: Raster | None, scale: int, value_max: float,
                  as_float: bool) -> None:
    if as_float:
        data = pixels.astype(np.float32)
    elif (value_max <= 1.0 or like is not None and like.floating) and path.suffix.lower() in GEOTIFF:
        # float inputs (reflectance 0..1, or any float units) come back as float32: integers of value_max 1
        # would be 0 or 1, and float input of --value-max 1e6 wrapped around uint16
        data = ((np.clip(pixels, -1, 1) + 1) / 2 * value_max).astype(np.float32)
    else:
        dtype = np.uint8 if value_max <= 255 else np.uint16
        data = np.round((np.clip(pixels, -1, 1) + 1) / 2 * value_max).astype(dtype)
    if as_float and path.suffix.lower() in PNG:  # maps as 8-bit grey, 0..max
        data = np.round(data / max(float(data.max()), 1e-12) * 255).astype(np.uint8)
    _write_data(path, data, like, scale)


def _write_data(path: Path, data: np.ndarray, like: Raster | None, scale: int) -> None:
    if path.suffix.lower() in GEOTIFF:
        profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": data.shape[0],
                   "dtype": data.dtype.name}
        if like is not None and like.crs is not None:
            profile["crs"] = like.crs
        if like is not None and like.transform is not None:
            profile["transform"] = like.transform @ Affine.scale(1 / scale)  # same origin, finer pixels
        with rasterio.open(path, "w", **profile) as target:
            target.write(data)
        try:  # GDAL reports a failed write (a full disk) only on stderr and leaves a truncated file
            with rasterio.open(path) as written:
                written.read()
        except rasterio.errors.RasterioError:
            raise OSError("the written file does not read back whole (is the disk full?)") from None
    elif path.suffix.lower() in PNG:
        if data.dtype == np.uint16 and data.shape[0] != 1:
            raise UserError(f"{path}: PNG cannot hold {data.shape[0]}-band 16-bit data; write a .tif instead")
        image = data[0] if data.shape[0] == 1 else data[:3].transpose(1, 2, 0)
        Image.fromarray(np.ascontiguousarray(image)).save(path)
    else:
        raise UserError(f"{path}: unsupported output format; use .tif (keeps the georeference) or .png")
