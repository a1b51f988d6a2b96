"""`quantise`: source values -> record integers, refusing what a conversion would silently destroy."""

import numpy as np
import pytest

from data_prep.radiometry import quantise
from satdiffmoe.errors import UserError

REFLECTANCE = np.linspace(0.01, 0.4, 3 * 8 * 8, dtype=np.float32).reshape(3, 8, 8)


def test_float_reflectance_round_trips_within_half_a_step():
    record, stats = quantise(REFLECTANCE, 10000, 10000, np.uint16, "LR a.tif")
    assert np.abs(record / 10000 - REFLECTANCE).max() <= 0.5 / 10000
    assert stats["clipped"] == 0 and stats["zeroed"] == 0 and stats["nan"] == 0


def test_reflectance_read_as_dn_is_refused_as_zeroed():
    # scale 1 (the old uint16 assumption): 0.01..0.4 all round to 0 -> a black scene, refused
    with pytest.raises(UserError, match=r"zeroed: LR a.tif: 100.0% of its nonzero values became 0"):
        quantise(REFLECTANCE, 1, 4095, np.uint16, "LR a.tif")


def test_a_source_made_constant_is_refused():
    dn = np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8) + 1000  # 1000..1191, all above 255
    with pytest.raises(UserError, match="constant: HR b.tif became the constant 255"):
        quantise(dn, 1, 255, np.uint8, "HR b.tif", max_clipped=1.0)  # even when clipping is allowed


def test_nan_values_are_counted_not_clipped():
    values = REFLECTANCE.copy()
    values[:, 0, 0] = np.nan
    record, stats = quantise(values, 10000, 10000, np.uint16, "LR a.tif")
    assert stats["nan"] == 3 and stats["clipped"] == 0 and record[:, 0, 0].tolist() == [0, 0, 0]


def test_per_band_stretch_with_offset():
    dn = np.stack([np.full((4, 4), v, np.float32) for v in (100.0, 200.0)])
    record, _ = quantise(dn, [1.0, 0.5], 255, np.uint8, "LR c.tif", offset=[50.0, 0.0])
    assert record[:, 0, 0].tolist() == [50, 100]
