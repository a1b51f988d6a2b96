"""Shared converter pieces: reading with band selection, rescaling, chip geometry, dates, hash splits."""

import numpy as np
import pytest
from raw_trees import from_origin, write_png, write_tif

from data_prep.dates import delta_days, find_dates, parse_date
from data_prep.raster_io import chip_offsets, read_raster, rescale, resize, window_transform
from data_prep.splits import hash_split
from satdiffmoe.errors import UserError


def test_geotiff_band_selection_keeps_georeference(tmp_path):
    array = np.arange(4 * 6 * 6, dtype=np.uint16).reshape(4, 6, 6)
    raster = read_raster(write_tif(tmp_path / "a.tif", array, from_origin(100, 200, 10, 10)), [3, 1])
    assert np.array_equal(raster.array, array[[2, 0]])
    assert raster.crs == "EPSG:32631" and raster.transform == (10.0, 0.0, 100.0, 0.0, -10.0, 200.0)


def test_16bit_png_reads_as_uint16(tmp_path):
    raster = read_raster(write_png(tmp_path / "a.png", np.full((1, 4, 4), 16000, np.uint16)))
    assert raster.array.dtype == np.uint16 and raster.array.max() == 16000 and raster.transform is None


def test_selecting_a_missing_band_names_the_file(tmp_path):
    path = write_tif(tmp_path / "a.tif", np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(UserError, match=f"band mismatch: {path} has 2 bands"):
        read_raster(path, [3])


def test_rescale_clips_then_maps_12bit_to_8bit():
    assert rescale(np.array([0, 4095, 9999], np.uint16), 4095, 255, np.uint8).tolist() == [0, 255, 255]


def test_resize_keeps_dtype_and_constant_values():
    out = resize(np.full((2, 10, 10), 4000, np.uint16), (4, 4))
    assert out.dtype == np.uint16 and (out == 4000).all()


def test_chip_grid_and_its_transform():
    assert chip_offsets((16, 20), 8) == [(0, 0), (0, 8)] + [(8, 0), (8, 8)]
    assert window_transform((2.0, 0.0, 100.0, 0.0, -2.0, 50.0), row=4, col=3) == (2.0, 0.0, 106.0, 0.0, -2.0, 42.0)


def test_dt_is_lr_minus_hr_in_days():
    hr = parse_date("2020-01-10T12:00:00Z", "t")
    assert delta_days(parse_date("2020-01-01", "t"), hr) == -9.5
    assert delta_days(None, hr) is None
    assert [d.day for d in find_dates("['2020-01-02', '2020-01-07']", "t")] == [2, 7]


def test_unparseable_date_is_a_user_error():
    with pytest.raises(UserError, match="no dates: meta.csv"):
        parse_date("soon", "meta.csv")


def test_hash_split_is_stable_and_respects_fractions():
    keys = [f"scene{i}" for i in range(2000)]
    splits = [hash_split(k, 0.1, 0.2) for k in keys]
    assert splits == [hash_split(k, 0.1, 0.2) for k in keys]
    assert 0.15 < splits.count("test") / 2000 < 0.25 and 0.06 < splits.count("val") / 2000 < 0.14
