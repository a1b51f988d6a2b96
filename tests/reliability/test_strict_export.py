"""An exported folder whose weights do not match its configs never loads: one line, exit 2, from
`sample`, `evaluate` and `SatDiffMoEPipeline.from_pretrained` (diffusers alone only warns and samples
with fresh or empty weights: a flat or NaN image, exit 0).

The folders are real exports (`satdiffmoe export` of the tiny trained run) with their safetensors
files rewritten by safetensors itself.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from reliability_helpers import TINY_EXPERIMENT, error_lines
from safetensors.torch import load_file, save_file

from satdiffmoe.cli import main
from satdiffmoe.pipelines import SatDiffMoEPipeline


@pytest.fixture(scope="module")
def export(tiny_runs, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("strict_export") / "sdm"
    assert main(["export", str(tiny_runs["sdm"]), "--out", str(folder)]) == 0
    return folder


def _drop_one(weights):
    return dict(list(weights.items())[1:])


def _rename(weights):
    return {f"model.{key}": value for key, value in weights.items()}


def _extra(weights):
    return {**weights, "leftover.weight": torch.zeros(2)}


def _reshape(weights):
    key = next(k for k, v in weights.items() if v.ndim == 4)
    return {**weights, key: torch.zeros(weights[key].shape[0] + 1, *weights[key].shape[1:])}


# (component, edit, what the one line must say)
TAMPERED = {
    "denoiser-missing": ("denoiser", _drop_one, "missing 1"),
    "denoiser-renamed": ("denoiser", _rename, "unexpected"),
    "denoiser-extra": ("denoiser", _extra, "unexpected 1 (leftover.weight)"),
    "denoiser-shape": ("denoiser", _reshape, "in the weights but"),
    "vae-missing": ("vae", _drop_one, "missing 1"),
}


def tampered(export: Path, folder: Path, case: str) -> Path:
    part, edit, _ = TAMPERED[case]
    shutil.copytree(export, folder)
    file = folder / part / "diffusion_pytorch_model.safetensors"
    save_file(edit(load_file(file)), file)
    return folder


def lr_png(path: Path) -> Path:
    Image.fromarray(np.full((4, 4, 3), 90, dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_from_pretrained_refuses_weights_that_do_not_fit_the_config(case, export, tmp_path):
    folder = tampered(export, tmp_path / "pipe", case)
    with pytest.raises(ValueError, match=re.escape(TAMPERED[case][2])) as raised:
        SatDiffMoEPipeline.from_pretrained(folder)
    assert f"{folder / TAMPERED[case][0]}:" in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize("case", ["denoiser-shape"])  # the other cases: from_pretrained above
def test_sample_refuses_the_folder_with_one_line_and_writes_nothing(case, export, tmp_path, capsys):
    folder = tampered(export, tmp_path / "pipe", case)
    out = tmp_path / "sr.png"
    code = main(["sample", "--ckpt", str(folder), "--lr", str(lr_png(tmp_path / "lr.png")), "--dt", "3",
                 "--out", str(out)])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and TAMPERED[case][2] in lines[0], lines
    assert not out.exists()


def test_evaluate_refuses_the_folder_with_one_line_and_writes_no_json(export, tiny_runs, tmp_path, capsys):
    folder = tampered(export, tmp_path / "pipe", "denoiser-renamed")
    code = main(["evaluate", str(TINY_EXPERIMENT), f"ckpt={folder}", f"run_root={tmp_path / 'runs'}",
                 f"data.root={tiny_runs['data']}"])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1 and "do not match its config.json" in lines[0], lines
    assert not list((tmp_path / "runs").rglob("*.json"))


def test_an_untouched_export_still_loads_and_samples(export):
    pipe = SatDiffMoEPipeline.from_pretrained(export)
    out = pipe([torch.zeros(3, 4, 4)], dt=[2.0], nfe=2, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.image).all() and out.image.std() > 0
