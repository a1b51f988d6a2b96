"""WorldStrat converter on the release layout: official splits, aligned chips, /10000 radiometry, CLM masks."""

import numpy as np
import pytest
from raw_trees import manifest, read_split, run_prepare, s2_reflectance, write_tif

TRAIN, VAL, TEST = "Landcover-769876", "Amnesty POI-20-2-2", "UNHCR-GRCs035302"
ROUND_TRIP = 0.5 / 10000  # a float reflectance comes back from the record to within half a 1e-4 step


def _convert(root, out, *extra):
    assert run_prepare("worldstrat", "--root", root, "--out", out, *extra) == 0
    return {s.key: s for split in ("train", "val", "test") for s in read_split(out, split)}


def test_official_split_and_chip_counts(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    _convert(worldstrat_root, out, "--lr-chip", 8)
    # 16×16 LR per AOI -> 4 chips of 8×8; one AOI per official split (split CSV with its index column)
    assert manifest(out)["counts"] == {"train": 4, "val": 4, "test": 4}
    assert {s.meta["aoi"] for s in read_split(out, "val")} == {VAL}


def test_hr_chip_is_aligned_with_its_lr_chip(worldstrat_root, tmp_path):
    chips = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 8)
    # the fixture marks HR rows 32..63, cols 0..31 = LR chip (y=8, x=0) at scale 4
    assert chips[f"{TRAIN}_y0008x0000"].hr.shape == (3, 32, 32)
    assert (chips[f"{TRAIN}_y0008x0000"].hr[0] == 1111).all()
    assert (chips[f"{TRAIN}_y0000x0008"].hr[0] == 1000).all()
    # each chip keeps its own georeference: 8 LR px × 10 m east of the AOI origin
    assert chips[f"{TRAIN}_y0000x0008"].meta["transform"] == [2.5, 0.0, 500080.0, 0.0, -2.5, 4000000.0]
    assert chips[f"{TRAIN}_y0000x0008"].meta["crs"] == "EPSG:32631"


def test_float_reflectance_lr_keeps_its_values(worldstrat_root, tmp_path):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0)[TRAIN]
    assert scene.meta["value_max"] == 10000 and scene.lr.dtype == np.uint16
    # revisit 1: B4, B3, B2 = 0.05, 0.06, 0.5 reflectance -> 500, 600, 5000 (never 0)
    assert scene.lr[0, :, 15, 15].tolist() == [500, 600, 5000]
    back = scene.lr[1, :, 15, 15] / scene.meta["value_max"]
    assert np.abs(back - np.array([0.08, 0.09, 0.1])).max() <= ROUND_TRIP


def test_ps_hr_is_spot_dn_over_10000_and_never_exceeds_value_max(worldstrat_root, tmp_path):
    scenes = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0)
    scene = scenes[TRAIN]
    assert scene.meta["bands"] == ["R", "G", "B"] and scene.meta["hr_product"] == "ps"
    assert scene.hr[:, 60, 60].tolist() == [1000, 2000, 3000]  # SPOT bands 1-3 of _ps.tiff
    assert all(int(s.hr.max()) <= s.meta["value_max"] for s in scenes.values())


def test_integer_dn_lr_gives_the_same_record_as_reflectance(worldstrat_root, tmp_path):
    path = worldstrat_root / "lr_dataset" / TRAIN / "L2A" / f"{TRAIN}-1-L2A_data.tiff"
    write_tif(path, np.round(s2_reflectance((0.05, 0.06, 0.5)) * 10000).astype(np.uint16))
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0)[TRAIN]
    assert scene.lr[0, :, 15, 15].tolist() == [500, 600, 5000]


def test_dt_cloud_masks_and_percent_cloud_cover(worldstrat_root, tmp_path):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0)[TEST]
    assert scene.meta["revisits"] == [1, 2]  # metadata lists n = 1, 2, 3; only 1 and 2 are on disk
    assert scene.meta["lr_dt"] == [-9.0, 10.0]  # 2019-06-01 and 2019-06-20 vs HR 2019-06-10
    assert scene.meta["hr_time"].startswith("2019-06-10")
    # revisit 1: CLM = 1 over the 4 left columns; revisit 2: all-zero stripe in its top 4 rows
    assert not scene.lr_mask[0, :, :4].any() and scene.lr_mask[0, :, 4:].all()
    assert not scene.lr_mask[1, :4].any() and scene.lr_mask[1, 4:].all()
    assert scene.meta["cloud_cover"] == [0.25, 0.25]  # the masked fraction
    assert scene.meta["scene_cloud_cover"] == [0.004, 0.12]  # CSV percent 0.4 and 12 -> fractions
    assert (scene.meta["lon"], scene.meta["lat"]) == (7.25, 45.5)


def test_without_clm_only_nodata_is_masked(worldstrat_root, tmp_path):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0, "--cloud-mask", "none")[TEST]
    assert scene.lr_mask[0].all() and scene.meta["cloud_cover"] == [0.004, 0.12]


def test_non_integer_native_ratio_is_resampled(worldstrat_root, tmp_path):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0, "--scale", 4)[VAL]
    assert scene.hr.shape == (3, 64, 64) and scene.meta["scale"] == 4  # HR 80×80 over LR 16×16 -> 64×64
    assert (scene.hr[0] == 1000).all()
    assert scene.meta["gsd"] == 2.5 and scene.meta["transform"][0] == 2.5


@pytest.mark.parametrize("product, value", [("ps_8bit", 200), ("rgb_8bit", 100)])
def test_8bit_products_give_8bit_records(worldstrat_root, tmp_path, product, value):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0, "--hr-product", product)[TRAIN]
    assert scene.hr.dtype == np.uint8 and scene.meta["value_max"] == 255 and (scene.hr == value).all()
    # reflectance × 255, as WorldStrat's 8-bit HR is (DN / 10000) × 255
    assert scene.lr[0, :, 15, 15].tolist() == [round(0.05 * 255), round(0.06 * 255), round(0.5 * 255)]


def test_rgbn_product_adds_nir(worldstrat_root, tmp_path):
    scene = _convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0, "--hr-product", "rgbn", "--bands", "rgbn")[TRAIN]
    assert scene.meta["bands"] == ["R", "G", "B", "NIR"] and scene.hr[:, 5, 5].tolist() == [1000, 2000, 3000, 4000]
    assert scene.lr[0, 3, 15, 15] == 7  # B8 = 0.0007


def test_12bit_folder_is_accepted(worldstrat_root, tmp_path):
    (worldstrat_root / "hr_dataset" / "12bit").mkdir()
    for aoi in (TRAIN, VAL, TEST):
        (worldstrat_root / "hr_dataset" / aoi).rename(worldstrat_root / "hr_dataset" / "12bit" / aoi)
    assert len(_convert(worldstrat_root, tmp_path / "out", "--lr-chip", 0)) == 3


def test_missing_hr_names_the_file_or_is_skipped(worldstrat_root, tmp_path, capsys):
    hr = worldstrat_root / "hr_dataset" / VAL / f"{VAL}_ps.tiff"
    hr.unlink()
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", tmp_path / "fail", "--lr-chip", 0) == 2
    assert f"missing HR: {hr}" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--skip-bad", "--lr-chip", 0) == 0
    result = manifest(out)
    assert result["skipped"]["by_reason"] == {"missing HR": 1}
    assert result["skipped"]["items"][0]["key"] == VAL
    assert result["counts"] == {"train": 1, "val": 0, "test": 1}


def test_metadata_without_the_revisit_column_names_the_columns(worldstrat_root, tmp_path, capsys):
    path = worldstrat_root / "metadata.csv"
    path.write_text(path.read_text().replace(",n,", ",revisit,", 1))
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "lacks column 'n'" in err and "'revisit'" in err and "--revisit-column" in err


def test_all_zero_lr_is_refused_or_counted(worldstrat_root, tmp_path, capsys):
    path = worldstrat_root / "lr_dataset" / VAL / "L2A" / f"{VAL}-2-L2A_data.tiff"
    write_tif(path, np.zeros((12, 16, 16), np.float32))
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", tmp_path / "fail", "--lr-chip", 0) == 2
    assert f"empty: LR {path} is 0 everywhere" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0, "--skip-bad") == 0
    assert manifest(out)["skipped"]["by_reason"] == {"empty": 1} and manifest(out)["counts"]["val"] == 0


def test_over_clipped_lr_is_refused(worldstrat_root, tmp_path, capsys):
    path = worldstrat_root / "lr_dataset" / TEST / "L2A" / f"{TEST}-1-L2A_data.tiff"
    write_tif(path, s2_reflectance((1.5, 0.06, 0.05)))  # B4 above reflectance 1: a third of the values clip
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", tmp_path / "out", "--lr-chip", 0) == 2
    assert f"over-clipped: LR {path} has 33.3% of its values outside [0, 1]" in capsys.readouterr().err
    # a looser limit accepts it, and the manifest says how much clipped
    out = tmp_path / "loose"
    _convert(worldstrat_root, out, "--lr-chip", 0, "--max-clipped", 0.5)
    assert manifest(out)["radiometry"]["source"]["lr"]["clipped_fraction_max"] == pytest.approx(1 / 3, abs=1e-4)


def test_manifest_records_radiometry_and_nan_counts(worldstrat_root, tmp_path):
    path = worldstrat_root / "lr_dataset" / TRAIN / "L2A" / f"{TRAIN}-1-L2A_data.tiff"
    lr = s2_reflectance((0.05, 0.06, 0.5))
    lr[:, 15, 0] = np.nan  # one pixel without data
    write_tif(path, lr)
    out = tmp_path / "out"
    scene = _convert(worldstrat_root, out, "--lr-chip", 0)[TRAIN]
    assert scene.lr_mask[0, 15, 0] == 0 and scene.lr[0, :, 15, 0].tolist() == [0, 0, 0]
    radiometry = manifest(out)["radiometry"]
    assert radiometry["source"]["lr"]["nan_count"] == 3  # three bands of one pixel
    assert radiometry["source"]["lr"]["source_max"] == pytest.approx([0.08, 0.09, 0.5])
    assert radiometry["record"]["hr"]["max"] == [1111, 2000, 3000]
    assert 0 < radiometry["record"]["lr"]["zero_fraction"] < 0.2  # the nodata stripe and the NaN pixel
    assert manifest(out)["normalisation"]["to_reflectance"] == "value / 10000"
