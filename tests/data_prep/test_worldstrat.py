"""WorldStrat converter: official splits, aligned chips, radiometry, Δt, nodata masks, georeference."""

import numpy as np
from raw_trees import manifest, read_split, run_prepare


def _by_key(scenes):
    return {s.key: s for s in scenes}


def test_official_split_and_chip_counts(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 8) == 0
    # 16×16 LR per AOI -> 4 chips of 8×8; one AOI per official split
    assert manifest(out)["counts"] == {"train": 4, "val": 4, "test": 4}
    assert {s.meta["aoi"] for s in read_split(out, "val")} == {"AOI-B"}


def test_hr_chip_is_aligned_with_its_lr_chip(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 8)
    chips = _by_key(read_split(out, "train"))
    # the fixture marks HR rows 32..63, cols 0..31 = LR chip (y=8, x=0) at scale 4
    assert chips["AOI-A_y0008x0000"].hr.shape == (3, 32, 32)
    assert (chips["AOI-A_y0008x0000"].hr[0] == 1111).all()
    assert (chips["AOI-A_y0000x0008"].hr[0] == 1000).all()
    # each chip keeps its own georeference: 8 LR px × 10 m east of the AOI origin
    assert chips["AOI-A_y0000x0008"].meta["transform"] == [2.5, 0.0, 500080.0, 0.0, -2.5, 4000000.0]
    assert chips["AOI-A_y0000x0008"].meta["crs"] == "EPSG:32631"


def test_true_colour_bands_and_12bit_clipping(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0)
    (scene,) = read_split(out, "train")
    assert scene.meta["value_max"] == 4095 and scene.hr.dtype == np.uint16
    assert scene.meta["bands"] == ["R", "G", "B"]
    assert scene.hr[:, 0, 0].tolist() == [1000, 2000, 3000]  # SPOT R, G, B; NIR dropped
    # revisit 1 has B4=500, B3=600, B2=5000: the 12-bit range clips 5000 to 4095
    assert scene.lr[0, :, 15, 15].tolist() == [500, 600, 4095]


def test_dt_is_signed_days_and_nodata_is_masked(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0)
    (scene,) = read_split(out, "test")
    assert scene.meta["lr_dt"] == [-9.0, 10.0]  # 2019-06-01 and 2019-06-20 vs HR 2019-06-10
    assert scene.meta["hr_time"].startswith("2019-06-10")
    # revisit 2 has an all-zero stripe in its top 4 rows
    assert scene.lr_mask[0].all() and not scene.lr_mask[1, :4].any() and scene.lr_mask[1, 4:].all()
    assert scene.meta["cloud_cover"] == [0.0, 0.25]
    assert (scene.meta["lon"], scene.meta["lat"]) == (7.25, 45.5)


def test_non_integer_native_ratio_is_resampled(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0, "--scale", 4)
    (scene,) = read_split(out, "val")  # AOI-B: HR 80×80 over LR 16×16 (ratio 5) -> 64×64
    assert scene.hr.shape == (3, 64, 64) and scene.meta["scale"] == 4
    assert (scene.hr[0] == 1000).all()
    assert scene.meta["gsd"] == 2.5 and scene.meta["transform"][0] == 2.5


def test_png_variants_give_8bit_records(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0,
                "--hr-format", "png", "--lr-format", "png")
    (scene,) = read_split(out, "train")
    assert scene.hr.dtype == np.uint8 and scene.meta["value_max"] == 255
    assert (scene.hr == 200).all() and scene.lr[:, 0, 8, 8].tolist() == [51, 102]


def test_12bit_lr_is_rescaled_to_an_8bit_hr(worldstrat_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0, "--hr-format", "png")
    (scene,) = read_split(out, "train")
    assert scene.lr.dtype == np.uint8
    assert scene.lr[0, :, 15, 15].tolist() == [round(500 * 255 / 4095), round(600 * 255 / 4095), 255]


def test_missing_hr_names_the_file_or_is_skipped(worldstrat_root, tmp_path, capsys):
    hr = worldstrat_root / "hr_dataset" / "AOI-B" / "AOI-B_rgbn.tiff"
    hr.unlink()
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", tmp_path / "fail", "--lr-chip", 0) == 2
    assert f"missing HR: {hr}" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--skip-bad", "--lr-chip", 0) == 0
    result = manifest(out)
    assert result["skipped"]["by_reason"] == {"missing HR": 1}
    assert result["skipped"]["items"][0]["key"] == "AOI-B"
    assert result["counts"] == {"train": 1, "val": 0, "test": 1}


def test_metadata_with_one_row_per_revisit(worldstrat_root, tmp_path):
    rows = ["tile,revisit,highres_date,lowres_date,cloud_cover"]
    for aoi in ("AOI-A", "AOI-B", "AOI-C"):
        rows += [f"{aoi},1,2019-06-10,2019-05-31,10", f"{aoi},2,2019-06-10,2019-06-12,0.5"]
    (worldstrat_root / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run_prepare("worldstrat", "--root", worldstrat_root, "--out", out, "--lr-chip", 0)
    (scene,) = read_split(out, "train")
    assert scene.meta["lr_dt"] == [-10.0, 2.0]
    assert scene.meta["cloud_cover"] == [0.1, 0.5]  # percent or fraction, stored as fraction
