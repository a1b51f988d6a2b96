"""fMoW converter with multispectral LR (issue 18): --lr-bands all keeps every Sentinel-2 band,
--drop-bands leaves some out (DiffusionSat: 0, 9, 10), the manifest records the bands and data.lr_rgb."""

import numpy as np
from raw_trees import manifest, read_split, run_prepare, write_tif

from data_prep.fmow import S2_MEAN

ALL_BANDS = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]


def _all_band_tiles(root):
    """Every Sentinel tile of the tree with each band at its fMoW-Sentinel mean DN (stretched to ~128),
    except B4, B3, B2 = 1500, 1200, 1000 as in the RGB tests."""
    bands = np.array([round(m) for m in S2_MEAN], dtype=np.uint16)
    bands[[3, 2, 1]] = (1500, 1200, 1000)
    for path in sorted((root / "fmow-sentinel").glob("*/*/*/*.tif")):
        write_tif(path, np.broadcast_to(bands[:, None, None], (13, 12, 12)).copy())


def _convert(root, out, *extra):
    assert run_prepare("fmow", "--root", root, "--out", out, "--hr-size", 32, "--scale", 4, *extra) == 0
    return {s.key: s for split in ("train", "val", "test") for s in read_split(out, split)}


def test_all_bands_keep_13_lr_bands_whose_b4_b3_b2_are_the_rgb_records_lr(fmow_root, tmp_path):
    _all_band_tiles(fmow_root)
    rgb = _convert(fmow_root, tmp_path / "rgb")["airport_0_0"]
    multi = _convert(fmow_root, tmp_path / "all", "--lr-bands", "all")["airport_0_0"]
    assert rgb.lr.shape == (3, 3, 8, 8) and multi.lr.shape == (3, 13, 8, 8) and multi.hr.shape == (3, 32, 32)
    assert np.array_equal(multi.lr[:, [3, 2, 1]], rgb.lr)
    assert multi.lr[0, :, 4, 4].tolist()[3:0:-1] == [152, 135, 109]
    assert all(abs(int(v) - 128) <= 1 for i, v in enumerate(multi.lr[0, :, 4, 4]) if i not in (1, 2, 3))
    assert multi.meta["lr_bands"] == ALL_BANDS and "lr_bands" not in rgb.meta


def test_the_manifest_records_the_bands_and_the_lr_rgb_mapping(fmow_root, tmp_path):
    _all_band_tiles(fmow_root)
    _convert(fmow_root, tmp_path / "all", "--lr-bands", "all")
    info = manifest(tmp_path / "all")
    assert info["lr_bands"] == {"names": ALL_BANDS, "count": 13, "lr_rgb": [3, 2, 1]}
    assert info["normalisation"]["lr_bands"] == ALL_BANDS
    assert len(info["normalisation"]["record"]["lr"]["low"]) == 13


def test_drop_bands_leaves_out_diffusionsats_three(fmow_root, tmp_path):
    _all_band_tiles(fmow_root)
    scene = _convert(fmow_root, tmp_path / "ten", "--lr-bands", "all", "--drop-bands", 0, 9, 10)["airport_0_0"]
    kept = [b for i, b in enumerate(ALL_BANDS) if i not in (0, 9, 10)]
    assert scene.lr.shape[1] == 10 and scene.meta["lr_bands"] == kept
    assert manifest(tmp_path / "ten")["lr_bands"] == {"names": kept, "count": 10, "lr_rgb": [2, 1, 0]}
    assert scene.lr[0, [2, 1, 0], 4, 4].tolist() == [152, 135, 109]


def test_default_is_unchanged_rgb(fmow_root, tmp_path):
    scene = _convert(fmow_root, tmp_path / "out")["airport_0_0"]
    assert scene.lr.shape == (3, 3, 8, 8) and scene.lr[0, :, 4, 4].tolist() == [152, 135, 109]
    assert manifest(tmp_path / "out")["lr_bands"] == {"names": ["B4", "B3", "B2"], "count": 3, "lr_rgb": None}


def test_dropping_an_rgb_band_or_dropping_without_all_is_refused(fmow_root, tmp_path, capsys):
    assert run_prepare("fmow", "--root", fmow_root, "--out", tmp_path / "a", "--lr-bands", "all",
                       "--drop-bands", 3) == 2
    assert "B4" in capsys.readouterr().err
    assert run_prepare("fmow", "--root", fmow_root, "--out", tmp_path / "b", "--drop-bands", 0) == 2
    assert "--lr-bands all" in capsys.readouterr().err
