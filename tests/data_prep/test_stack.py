"""Generic GeoTIFF stack converter: inferred scale, value_max, masks, dates, split column or hash."""

import numpy as np
import pytest
from raw_trees import manifest, read_split, run_prepare, write_tif


def test_splits_from_split_column_and_values(stack_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("stack", "--root", stack_root, "--out", out, "--value-max", 4095, "--band-names", "red,nir") == 0
    assert manifest(out)["counts"] == {"train": 1, "val": 1, "test": 1}
    (scene,) = read_split(out, "val")
    assert scene.key == "b" and scene.meta["scale"] == 4 and scene.meta["bands"] == ["red", "nir"]
    assert scene.meta["value_max"] == 4095
    assert scene.lr[:, :, 0, 0].tolist() == [[4095, 200], [300, 400]]  # 4500 clipped to 12 bits
    assert scene.meta["lr_dt"] == [-10.0, 3.0]  # lr_early, lr_late vs HR 2021-07-01
    assert scene.meta["gsd"] == 2.0 and scene.meta["crs"] == "EPSG:32631"


def test_mask_file_and_nodata(stack_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("stack", "--root", stack_root, "--out", out)
    (scene,) = read_split(out, "train")
    assert scene.lr_mask[0].all()  # no mask file, no zero pixels
    assert not scene.lr_mask[1, :2].any() and scene.lr_mask[1, 2:].all()  # lr_late_mask.tif
    assert scene.meta["value_max"] == 65535


def test_hash_split_without_split_file(stack_root, tmp_path):
    (stack_root / "splits.csv").unlink()
    out = tmp_path / "out"
    run_prepare("stack", "--root", stack_root, "--out", out, "--val-frac", 0, "--test-frac", 0)
    assert manifest(out)["counts"] == {"train": 3, "val": 0, "test": 0}


def test_chips_keep_georeference(stack_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("stack", "--root", stack_root, "--out", out, "--lr-chip", 4)
    chips = {s.key: s for s in read_split(out, "test")}
    assert sorted(chips) == ["c_y0000x0000", "c_y0000x0004", "c_y0004x0000", "c_y0004x0004"]
    assert chips["c_y0004x0004"].meta["transform"] == [2.0, 0.0, 300032.0, 0.0, -2.0, 4999968.0]


def test_scale_mismatch_names_both_files(stack_root, tmp_path, capsys):
    write_tif(stack_root / "a" / "lr_late.tif", np.ones((2, 10, 10), np.uint16))
    assert run_prepare("stack", "--root", stack_root, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "scale mismatch" in err and str(stack_root / "a" / "lr_late.tif") in err


def test_missing_dates_is_an_error(stack_root, tmp_path, capsys):
    (stack_root / "c" / "dates.csv").write_text("file,date\nhr.tif,2021-07-01\n")
    assert run_prepare("stack", "--root", stack_root, "--out", tmp_path / "out") == 2
    assert "no dates" in capsys.readouterr().err


def test_missing_hr_names_the_file_or_is_skipped(stack_root, tmp_path, capsys):
    hr = stack_root / "b" / "hr.tif"
    hr.unlink()
    assert run_prepare("stack", "--root", stack_root, "--out", tmp_path / "fail") == 2
    assert f"missing HR: {hr}" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("stack", "--root", stack_root, "--out", out, "--skip-bad") == 0
    assert manifest(out)["skipped"]["by_reason"] == {"missing HR": 1}
    assert manifest(out)["counts"] == {"train": 1, "val": 0, "test": 1}


def test_png_images_convert_like_geotiffs(tmp_path):
    """An RGB PNG stack (8-bit HR 16×16, two 4×4 LRs, one PNG mask) converts with the same values."""
    from PIL import Image

    folder = tmp_path / "raw" / "p"
    folder.mkdir(parents=True)
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(folder / "hr.png")
    Image.fromarray(np.full((4, 4, 3), 50, np.uint8)).save(folder / "lr_a.png")
    Image.fromarray(np.full((4, 4, 3), 90, np.uint8)).save(folder / "lr_b.png")
    mask = np.ones((4, 4), np.uint8)
    mask[0] = 0
    Image.fromarray(mask).save(folder / "lr_b_mask.png")
    (folder / "dates.csv").write_text("file,date\nhr.png,2021-07-01\nlr_a.png,2021-06-21\nlr_b.png,2021-07-04\n")
    out = tmp_path / "out"
    assert run_prepare("stack", "--root", folder.parent, "--out", out, "--val-frac", 0, "--test-frac", 0) == 0
    (scene,) = read_split(out, "train")
    assert scene.meta["scale"] == 4 and scene.meta["value_max"] == 255 and scene.meta["lr_files"] == ["lr_a.png", "lr_b.png"]
    assert scene.hr.shape == (3, 16, 16) and (scene.hr == 200).all()
    assert scene.lr[:, :, 0, 0].tolist() == [[50, 50, 50], [90, 90, 90]]
    assert scene.lr_mask[0].all() and not scene.lr_mask[1, 0].any() and scene.lr_mask[1, 1:].all()
    assert scene.meta["lr_dt"] == [-10.0, 3.0]


def test_help_prints_each_default_once(capsys):
    with pytest.raises(SystemExit):
        run_prepare("stack", "--help")
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    options = help_text.split(" --")
    assert all(option.count("(default:") <= 1 for option in options), [o for o in options if o.count("(default:") > 1]
    assert "e.g. 1,2,3 (default: all)" in help_text and "(default: inferred)" in help_text
