"""fMoW converter: RGB HR paired with same-location Sentinel LRs, Δt from both timestamps, resizing."""

import numpy as np
from raw_trees import manifest, read_split, run_prepare, s2_stack, write_tif


def _convert(root, out, *extra):
    assert run_prepare("fmow", "--root", root, "--out", out, "--hr-size", 32, "--scale", 4, *extra) == 0
    return {s.key: s for split in ("train", "val", "test") for s in read_split(out, split)}


def test_one_record_per_rgb_image_in_its_split(fmow_root, tmp_path):
    scenes = _convert(fmow_root, tmp_path / "out")
    assert sorted(scenes) == ["airport_0_0", "airport_0_1", "airport_7_0", "airport_7_1"]
    assert manifest(tmp_path / "out")["counts"] == {"train": 2, "val": 2, "test": 0}
    assert scenes["airport_7_0"].meta["split"] == "val"


def test_resized_to_hr_size_and_scale_with_rgb_bands(fmow_root, tmp_path):
    scene = _convert(fmow_root, tmp_path / "out")["airport_0_0"]
    assert scene.hr.shape == (3, 32, 32) and scene.lr.shape == (3, 3, 8, 8)
    assert scene.hr.dtype == np.uint8 and abs(int(scene.hr[0, 16, 16]) - 128) <= 1  # JPEG rounding
    # B4, B3, B2 = 1500, 1200, 1000 DN, stretched per band over [mean − 2σ, mean + 2σ] (DiffusionSat)
    assert scene.lr[0, :, 4, 4].tolist() == [152, 135, 109]
    # 48×40 JPEG at 0.5 m -> centre 40×40 square -> 32 px: 0.625 m
    assert scene.meta["gsd"] == 0.625
    assert (scene.meta["lon"], scene.meta["lat"]) == (10.1, 50.1)


def test_dt_pairs_each_sentinel_date_with_the_hr_date(fmow_root, tmp_path):
    scenes = _convert(fmow_root, tmp_path / "out")
    # HR 0 taken 2017-03-10T10:00; Sentinel 2017-03-01T10:00, 2017-03-20T10:00, 2017-12-25T12:00
    assert scenes["airport_0_0"].meta["lr_dt"] == [-9.0, 10.0, 290.0833]
    assert scenes["airport_0_1"].meta["lr_dt"][-1] == -7.0  # HR 1 taken 2018-01-01T12:00


def test_max_lr_keeps_the_nearest_in_date_order(fmow_root, tmp_path):
    scenes = _convert(fmow_root, tmp_path / "out", "--max-lr", 2)
    assert scenes["airport_0_0"].meta["lr_dt"] == [-9.0, 10.0]
    assert scenes["airport_0_1"].meta["lr_dt"] == [-287.0833, -7.0]


def test_missing_hr_names_the_file_or_is_skipped(fmow_root, tmp_path, capsys):
    jpg = fmow_root / "fmow-rgb" / "val" / "airport" / "airport_7" / "airport_7_1_rgb.jpg"
    jpg.unlink()
    assert run_prepare("fmow", "--root", fmow_root, "--out", tmp_path / "fail", "--hr-size", 32) == 2
    assert f"missing HR: {jpg}" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("fmow", "--root", fmow_root, "--out", out, "--hr-size", 32, "--skip-bad") == 0
    assert manifest(out)["skipped"]["by_reason"] == {"missing HR": 1}
    assert manifest(out)["counts"]["val"] == 1


def test_fixed_dn_stretch_and_the_manifest_normalisation(fmow_root, tmp_path):
    out = tmp_path / "out"
    scene = _convert(fmow_root, out, "--s2-max", 3000)["airport_0_0"]
    assert scene.lr[0, :, 4, 4].tolist() == [128, 102, 85]  # DN · 255 / 3000
    _convert(fmow_root, tmp_path / "k2")
    norm = manifest(tmp_path / "k2")["normalisation"]
    assert norm["lr_bands"] == ["B4", "B3", "B2"] and norm["lr_offset_dn"][0] == round(1136.26026392 - 2 * 965.23119807, 4)


def test_float_geotiff_lr_is_read(fmow_root, tmp_path):
    path = fmow_root / "fmow-sentinel" / "train" / "airport" / "airport_0" / "airport_0_0.tif"
    write_tif(path, s2_stack((1500, 1200, 1000), size=12, bands=13).astype(np.float32))
    assert _convert(fmow_root, tmp_path / "out")["airport_0_0"].lr[0, :, 4, 4].tolist() == [152, 135, 109]


def test_hr_cloud_cover_is_a_fraction(fmow_root, tmp_path):
    assert _convert(fmow_root, tmp_path / "out")["airport_0_0"].meta["hr_cloud_cover"] == 0.12  # JSON says 12 %


def test_saturated_lr_is_refused(fmow_root, tmp_path, capsys):
    path = fmow_root / "fmow-sentinel" / "val" / "airport" / "airport_7" / "airport_7_1.tif"
    write_tif(path, s2_stack((9000, 9000, 9000), size=12, bands=13))  # far above mean + 2σ in every band
    assert run_prepare("fmow", "--root", fmow_root, "--out", tmp_path / "out", "--hr-size", 32) == 2
    assert f"over-clipped: LR {path} has 100.0% of its values outside" in capsys.readouterr().err
