"""PNG pixels at their real bit depth, as C×H×W arrays.

PIL has no 16-bit RGB mode: it opens a 16-bit RGB(A) PNG as 8-bit RGB, keeping the high byte
(40000 -> 156) without a word. GDAL's PNG driver (inside rasterio) keeps every depth, so PNGs are
read through rasterio, which the GeoTIFF path needs anyway. A palette PNG's indices become the
colours they stand for (RGB), as any image viewer shows them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning


def read_png(path: str | Path) -> np.ndarray:
    """C×H×W array in the file's own dtype (uint8 or uint16). Raises rasterio's errors for bad files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)  # a PNG has no georeference
        with rasterio.open(path, driver="PNG") as source:
            if source.count == 1 and source.colorinterp[0] == ColorInterp.palette:
                return expand_palette(source.read(1), source.colormap(1))
            return source.read()


def expand_palette(indices: np.ndarray, colormap: dict[int, tuple[int, ...]]) -> np.ndarray:
    """H×W palette indices -> 3×H×W uint8 RGB."""
    lut = np.zeros((256, 3), np.uint8)
    for index, colour in colormap.items():
        lut[index] = colour[:3]
    return np.ascontiguousarray(lut[indices].transpose(2, 0, 1))
