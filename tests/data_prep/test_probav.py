"""PROBA-V converter: 14-bit single band, ×3, QM -> lr_mask, SM -> hr_mask, Δt unknown, test without HR skipped."""

import numpy as np
from raw_trees import manifest, read_split, run_prepare


def _all(out):
    return {s.key: s for split in ("train", "val", "test") for s in read_split(out, split)}


def test_record_values_masks_and_unknown_dt(probav_root, tmp_path):
    out = tmp_path / "out"
    assert run_prepare("probav", "--root", probav_root, "--out", out, "--bands", "NIR") == 0
    scene = _all(out)["NIR-imgset0001"]
    assert scene.hr.shape == (1, 48, 48) and scene.lr.shape == (3, 1, 16, 16)
    assert scene.meta["value_max"] == 16383 and scene.meta["scale"] == 3 and scene.meta["bands"] == ["NIR"]
    assert scene.hr[0, 20, 20] == 12000 and scene.lr[:, 0, 0, 15].tolist() == [1000, 2000, 3000]
    assert scene.meta["lr_dt"] == [None, None, None]
    assert scene.meta["cloud_cover"] == [0.0, 0.25, 0.5]  # QM i masks 4·i of 16 columns
    assert not scene.hr_mask[:6].any() and scene.hr_mask[6:].all()


def test_test_imgsets_without_hr_are_skipped_and_counted(probav_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("probav", "--root", probav_root, "--out", out, "--bands", "NIR")
    result = manifest(out)
    assert result["skipped"]["by_reason"] == {"no HR": 1}
    assert result["skipped"]["items"][0]["key"] == "NIR-imgset1160"
    assert sum(result["counts"].values()) == 4


def test_train_imgsets_are_split_by_hash_reproducibly(probav_root, tmp_path):
    run_prepare("probav", "--root", probav_root, "--out", tmp_path / "a", "--bands", "NIR", "--val-frac", 0.5, "--test-frac", 0)
    run_prepare("probav", "--root", probav_root, "--out", tmp_path / "b", "--bands", "NIR", "--val-frac", 0.5, "--test-frac", 0)
    first = {k: s.meta["split"] for k, s in _all(tmp_path / "a").items()}
    assert first == {k: s.meta["split"] for k, s in _all(tmp_path / "b").items()}
    assert set(first.values()) == {"train", "val"}


def test_max_lr_keeps_the_clearest(probav_root, tmp_path):
    out = tmp_path / "out"
    run_prepare("probav", "--root", probav_root, "--out", out, "--bands", "NIR", "--max-lr", 2)
    scene = _all(out)["NIR-imgset0000"]
    assert scene.meta["lr_files"] == ["LR000.png", "LR001.png"]
    assert scene.lr.dtype == np.uint16


def test_missing_hr_names_the_file_or_is_skipped(probav_root, tmp_path, capsys):
    hr = probav_root / "train" / "NIR" / "imgset0002" / "HR.png"
    hr.unlink()
    assert run_prepare("probav", "--root", probav_root, "--out", tmp_path / "fail", "--bands", "NIR") == 2
    assert f"missing HR: {hr}" in capsys.readouterr().err

    out = tmp_path / "skip"
    assert run_prepare("probav", "--root", probav_root, "--out", out, "--bands", "NIR", "--skip-bad") == 0
    assert manifest(out)["skipped"]["by_reason"] == {"no HR": 1, "missing HR": 1}
    assert sum(manifest(out)["counts"].values()) == 3
