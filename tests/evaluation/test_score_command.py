"""`satdiffmoe score`: the framework's metrics on image files, real LPIPS, one-line refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from satdiffmoe.cli import main

LPIPS_IMAGES = Path(__file__).parent / "data" / "lpips"
# the official LPIPS v0.1 AlexNet values of the example images (/work/shared/reference/lpips/README.md)
OFFICIAL = {"ex_p0.png": 0.72188, "ex_p1.png": 0.13757, "ex_ref.png": 0.0}


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    """pred/ holds the three example images; ref/ holds ex_ref under each of their names."""
    pred, ref = tmp_path / "pred", tmp_path / "ref"
    pred.mkdir()
    ref.mkdir()
    for name in OFFICIAL:
        shutil.copy(LPIPS_IMAGES / name, pred / name)
        shutil.copy(LPIPS_IMAGES / "ex_ref.png", ref / name)
    return pred, ref


def test_score_prints_the_official_lpips_values(tmp_path, capsys):
    pred, ref = _folders(tmp_path)
    out = tmp_path / "metrics.json"
    assert main(["score", "--pred", str(pred), "--ref", str(ref), "--metrics", "lpips", "psnr", "--out", str(out)]) == 0
    summary = json.loads(out.read_text())
    rows = {row["name"]: row for row in summary["rows"]}
    for name, value in OFFICIAL.items():
        assert rows[name]["lpips"] == pytest.approx(value, abs=1e-3)
    assert rows["ex_ref.png"]["psnr"] == 100.0  # an exact match is capped, not infinite
    assert summary["metrics"]["lpips"]["mean"] == pytest.approx(np.mean(list(OFFICIAL.values())), abs=1e-3)
    printed = capsys.readouterr().out
    assert "LPIPS" in printed and "3 image(s)" in printed


def test_score_single_files_with_lr_gives_consistency_and_marks_what_needs_a_reference(tmp_path):
    hr = np.asarray(Image.open(LPIPS_IMAGES / "ex_ref.png").convert("RGB"))
    lr = hr.reshape(16, 4, 16, 4, 3).mean((1, 3)).round().astype(np.uint8)
    nearest = lr.repeat(4, 0).repeat(4, 1)  # area-downsamples back to lr exactly
    Image.fromarray(lr).save(tmp_path / "lr.png")
    Image.fromarray(nearest).save(tmp_path / "sr.png")
    out = tmp_path / "m.json"
    assert main(["score", "--pred", str(tmp_path / "sr.png"), "--lr", str(tmp_path / "lr.png"), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["consistency_l1"]["mean"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["lr_psnr"]["mean"] == 100.0
    assert metrics["psnr"] == {"unavailable": "needs the HR reference"}
    assert "unavailable" in metrics["unc_spearman"] and "unavailable" in metrics["improvement"]


def test_score_reads_16_bit_geotiffs_with_value_max(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 4096, size=(3, 32, 32)).astype(np.uint16)
    for name, pixels in (("sr.tif", data), ("hr.tif", data)):
        profile = {"driver": "GTiff", "height": 32, "width": 32, "count": 3, "dtype": "uint16"}
        with rasterio.open(tmp_path / name, "w", **profile) as target:
            target.write(pixels)
    out = tmp_path / "m.json"
    assert main(["score", "--pred", str(tmp_path / "sr.tif"), "--ref", str(tmp_path / "hr.tif"),
                 "--value-max", "4095", "--metrics", "psnr", "sam", "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["psnr"]["mean"] == 100.0 and metrics["sam"]["mean"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize("case", ["size", "bands", "unreadable", "no_common_names", "nan", "out_is_input"])
def test_score_refuses_bad_input_with_one_line(tmp_path, capsys, case):
    pred, ref = _folders(tmp_path)
    argv = ["score", "--pred", str(pred), "--ref", str(ref), "--metrics", "psnr"]
    if case == "size":
        Image.new("RGB", (32, 32)).save(ref / "ex_p0.png")
    elif case == "bands":
        Image.new("L", (64, 64)).save(ref / "ex_p0.png")
    elif case == "unreadable":
        (pred / "ex_p0.png").write_bytes(b"not a png")
    elif case == "no_common_names":
        for p in ref.iterdir():
            p.rename(ref / ("x_" + p.name))
    elif case == "nan":
        profile = {"driver": "GTiff", "height": 4, "width": 4, "count": 3, "dtype": "float32"}
        with rasterio.open(tmp_path / "nan.tif", "w", **profile) as target:
            target.write(np.full((3, 4, 4), np.nan, np.float32))
        argv = ["score", "--pred", str(tmp_path / "nan.tif"), "--ref", str(tmp_path / "nan.tif")]
    elif case == "out_is_input":
        argv += ["--out", str(pred / "ex_p0.png")]
    before = {p: p.read_bytes() for p in pred.iterdir()}
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert {p: p.read_bytes() for p in pred.iterdir()} == before  # nothing the user had is touched
