"""Reading rasters for the converters: GeoTIFF through rasterio, PNG/JPEG through PIL, as C×H×W arrays.

Besides reading, this module holds the pixel operations every converter needs before a `Scene` is
built: band selection, radiometric rescaling between bit depths, antialiased resizing, and cutting
aligned HR/LR chips while keeping the HR georeference (`crs`, `transform`) correct for each chip.

Errors name the file and the problem and are `UserError`s, so `--skip-bad` can count and skip them;
their text starts with a short category ("unreadable file: ...") that the manifest groups skips by.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from satdiffmoe.data.png import read_png
from satdiffmoe.errors import UserError

GEOTIFF_SUFFIXES = (".tif", ".tiff")
PIL_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclass
class Raster:
    """Pixels (C×H×W, native dtype) plus the georeference when the file has one."""

    array: np.ndarray
    crs: str | None = None
    transform: tuple[float, ...] | None = None  # affine a, b, c, d, e, f (rasterio order)

    @property
    def shape_hw(self) -> tuple[int, int]:
        return int(self.array.shape[1]), int(self.array.shape[2])


def require_rasterio():
    """Import rasterio or explain how to get it (GeoTIFF support is an ordinary dependency)."""
    try:
        import rasterio
    except ImportError:
        raise UserError("rasterio is not installed but GeoTIFF input needs it; "
                        "run `pip install rasterio` (it ships GDAL in its wheel)") from None
    return rasterio


def read_raster(path: Path, bands: Sequence[int] | None = None) -> Raster:
    """Read `path` as C×H×W; `bands` are 1-based band numbers (None = all bands)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"missing file: {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in GEOTIFF_SUFFIXES or (suffix in PIL_SUFFIXES and _is_tiff(path)):
        return _read_geotiff(path, bands)
    if suffix in PIL_SUFFIXES:
        return Raster(select_bands(_read_pil(path), bands, path))
    raise UserError(f"unreadable file: {path} has an unsupported suffix; use GeoTIFF (.tif) or PNG/JPEG")


def _is_tiff(path: Path) -> bool:
    """TIFF bytes under another suffix: WorldStrat's `<AOI>_rgb_8bit.png` is written by tifffile.imwrite
    (worldstrat src/utils/convert_to_8bit_radiometry.py ~265, save_to_files), so it is a TIFF named .png."""
    with path.open("rb") as handle:
        return handle.read(4) in (b"II*\x00", b"MM\x00*")


def _read_geotiff(path: Path, bands: Sequence[int] | None) -> Raster:
    rasterio = require_rasterio()
    try:
        with warnings.catch_warnings():
            # a plain (non-georeferenced) TIFF is valid input: it just gets transform None below
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            with rasterio.open(path) as src:
                indexes = list(bands) if bands else list(range(1, src.count + 1))
                if max(indexes) > src.count or min(indexes) < 1:
                    raise UserError(f"band mismatch: {path} has {src.count} bands, cannot select bands {indexes}")
                array = src.read(indexes)
                crs = src.crs.to_string() if src.crs else None
                transform = None if src.transform.is_identity else tuple(src.transform)[:6]
    except rasterio.errors.RasterioError as exc:
        raise UserError(f"unreadable file: {path} ({exc})") from None
    return Raster(array, crs, transform)


def _read_pil(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".png":  # PIL reads 16-bit RGB PNGs as 8-bit (40000 -> 156)
        try:
            return read_png(path)
        except OSError as exc:
            raise UserError(f"unreadable file: {path} ({exc})") from None
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable file: {path} ({exc})") from None
    if array.dtype == np.int32:  # PIL opens some 16-bit PNGs in mode "I"; the values still fit uint16
        array = array.astype(np.uint16)
    return array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)


def select_bands(array: np.ndarray, bands: Sequence[int] | None, path: Path) -> np.ndarray:
    """Pick 1-based `bands` from a C×H×W array (for PIL images, where rasterio cannot select on read)."""
    if not bands:
        return array
    if max(bands) > array.shape[0] or min(bands) < 1:
        raise UserError(f"band mismatch: {path} has {array.shape[0]} bands, cannot select bands {list(bands)}")
    return array[[b - 1 for b in bands]]


def rescale(array: np.ndarray, src_max: float, dst_max: float, dtype: type) -> np.ndarray:
    """Map [0, src_max] linearly onto [0, dst_max] in `dtype`, clipping values beyond src_max."""
    if src_max == dst_max and array.dtype == dtype:
        return np.minimum(array, np.asarray(src_max, dtype=dtype))
    scaled = np.clip(array.astype(np.float64), 0, src_max) * (dst_max / src_max)
    return np.round(scaled).astype(dtype)


def resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize of C×H×W to `size` (H, W), keeping the dtype (and an integer dtype's range)."""
    if tuple(array.shape[1:]) == tuple(size):
        return array
    tensor = torch.from_numpy(array.astype(np.float32))[None]
    # antialias=True low-pass filters when shrinking, so a downsampled HR looks like a real coarser image
    out = F.interpolate(tensor, size=tuple(size), mode="bicubic", antialias=True, align_corners=False)[0]
    if np.issubdtype(array.dtype, np.floating):
        # float rasters (reflectance) stay float; bicubic overshoot is left to `radiometry.quantise`,
        # which clips and counts it (np.iinfo would raise on a float dtype)
        return out.numpy().astype(array.dtype)
    info = np.iinfo(array.dtype)
    return out.round().clamp(info.min, info.max).numpy().astype(array.dtype)


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an H×W {0, 1} mask (a mask must stay binary)."""
    if tuple(mask.shape) == tuple(size):
        return mask
    out = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=tuple(size), mode="nearest")
    return out[0, 0].numpy().astype(np.uint8)


def center_square(array: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Largest centred square crop of C×H×W; also returns the (row, col) offset of the crop."""
    h, w = array.shape[-2:]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    return array[..., y:y + side, x:x + side], y, x


def nonzero_mask(lr: np.ndarray) -> np.ndarray:
    """H×W uint8 validity from C×H×W: a pixel that is 0 in every band is nodata (Sentinel-2 fill value)."""
    return (lr != 0).any(axis=0).astype(np.uint8)


def chip_offsets(lr_hw: tuple[int, int], chip: int) -> list[tuple[int, int]]:
    """Top-left LR offsets of a non-overlapping grid of `chip`×`chip` chips (chip 0 = the whole image)."""
    h, w = lr_hw
    if chip <= 0:
        return [(0, 0)]
    if chip > min(h, w):
        raise UserError(f"chip size: --lr-chip {chip} is larger than the LR image ({h}×{w}); "
                        "use a smaller --lr-chip or 0 for whole images")
    return [(y, x) for y in range(0, h - chip + 1, chip) for x in range(0, w - chip + 1, chip)]


def scaled_transform(transform: Sequence[float] | None, sx: float, sy: float) -> tuple[float, ...] | None:
    """Affine of an image resampled so that one new pixel spans (sx, sy) old pixels."""
    if transform is None:
        return None
    a, b, c, d, e, f = transform[:6]
    return (a * sx, b * sy, c, d * sx, e * sy, f)


def window_transform(transform: Sequence[float] | None, row: int, col: int) -> tuple[float, ...] | None:
    """Affine of the sub-image whose top-left pixel is (row, col) of the image with `transform`."""
    if transform is None:
        return None
    a, b, c, d, e, f = transform[:6]
    return (a, b, a * col + b * row + c, d, e, d * col + e * row + f)
