"""An exported folder's weights must be exactly what its configs build, before anything loads them.

diffusers only warns about a missing or unexpected tensor: the model then samples with freshly
initialised weights (a near-flat image), or with empty ones (NaN) when it loads onto the meta
device. `check_weights` compares every model component's safetensors header (names and shapes,
no tensor data) with the model its `config.json` builds on the meta device, and raises one
ValueError naming the component, the first offending tensors and the fix.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import torch
from safetensors import safe_open

REEXPORT = "re-export the checkpoint with `satdiffmoe export RUN_OR_CKPT --out FOLDER`"


def check_weights(folder: str | Path, skip: set[str] = frozenset()) -> None:
    """Raise ValueError unless every model component of `folder` (model_index.json) stores exactly
    the tensors its config builds, with the same shapes. Components in `skip` are not read."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    for name, entry in index.items():
        if name.startswith("_") or name in skip or not (isinstance(entry, list) and len(entry) == 2 and None not in entry):
            continue
        model_class = getattr(importlib.import_module(entry[0]), entry[1], None)
        if not (isinstance(model_class, type) and issubclass(model_class, torch.nn.Module)):
            continue  # the scheduler, or a class diffusers itself will fail to find
        _compare(folder / name, _expected_shapes(model_class, folder / name), _stored_shapes(folder / name))


def _expected_shapes(model_class, subfolder: Path) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = model_class.from_config(model_class.load_config(subfolder))
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _stored_shapes(subfolder: Path) -> dict[str, tuple[int, ...]]:
    files = sorted(subfolder.glob("diffusion_pytorch_model*.safetensors"))
    if not files:
        raise ValueError(f"{subfolder} has no diffusion_pytorch_model.safetensors; {REEXPORT}")
    shapes = {}
    for file in files:  # one file, or the shards of a large model
        with safe_open(str(file), framework="pt") as handle:
            shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
    return shapes


def _compare(subfolder: Path, expected: dict, stored: dict) -> None:
    missing = sorted(set(expected) - set(stored))
    unexpected = sorted(set(stored) - set(expected))
    if missing or unexpected:
        parts = [f"{what} {len(keys)} ({_first(keys)})" for what, keys in
                 (("missing", missing), ("unexpected", unexpected)) if keys]
        raise ValueError(f"{subfolder}: the weights do not match its config.json, tensors {'; '.join(parts)}; "
                         f"{REEXPORT}")
    for key in sorted(expected):
        if expected[key] != stored[key]:
            raise ValueError(f"{subfolder}: tensor {key} is {_size(stored[key])} in the weights but "
                             f"{_size(expected[key])} in config.json; {REEXPORT}")


def _first(keys: list[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (", ..." if len(keys) > count else "")


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "a scalar"
