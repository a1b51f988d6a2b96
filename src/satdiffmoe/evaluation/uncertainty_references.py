"""Free uncertainty maps, scored against a model's own error on the same scenes (issue 27, §8).

A model's uncertainty map is only worth its calibration numbers if it ranks the error better than
a map that costs nothing. `evaluate` (with `eval.references`) scores two such maps against the error
|output − HR| of the model it evaluates, scene for scene, and writes each as its own eval JSON
(`<model eval>_unc_constant.json`, `<model eval>_unc_lr_std.json`) beside the model's:

* `unc_constant`: the same value everywhere. It ranks no pixel: Spearman ρ is undefined (reported
  as unavailable, not as 0), and its AUSE is that of a random ranking (`calibration` breaks ties by
  their mean, i.e. in expectation over random orders): the floor every map must beat.
* `unc_lr_std`: the per-pixel std of the valid bicubic-upsampled LRs across dates
  (`data.lr_stack.bicubic_spread_of`), in the HR bands (`data.lr_rgb`): where the dates disagree
  (clouds, change, aliasing at edges) the output is least determined.

Unlike the model's row, AUSE is reported for a constant map too (the model's row leaves it
undefined, evaluation/suite.py): here it is the reference point, not a claim about a ranking.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..data.lr_stack import bicubic_spread_of
from . import calibration
from .suite import NEEDS_UNCERTAINTY, absolute_error


def constant_map(batch: dict[str, Any]) -> torch.Tensor:
    hr = batch["hr"]
    return torch.ones((hr.shape[0], 1, *hr.shape[-2:]), device=hr.device)


def lr_std_map(batch: dict[str, Any]) -> torch.Tensor:
    return bicubic_spread_of(batch["lr"], batch["lr_valid"], tuple(batch["hr"].shape[-2:]))


UNCERTAINTY_REFERENCES: dict[str, Callable[[dict[str, Any]], torch.Tensor]] = {
    "unc_constant": constant_map,
    "unc_lr_std": lr_std_map,
}
CONSTANT_RHO = ("undefined: a constant map ranks no pixel (a random ranking has ρ = 0 in expectation); "
                "its AUSE is the random ranking's")


class UncertaintyReferences:
    """Collects, per reference map, the per-scene calibration values against a model's outputs."""

    def __init__(self, metrics: list[str], rows: Callable[[dict, int, dict], list[dict]]):
        self.metrics = [m for m in metrics if m in NEEDS_UNCERTAINTY]
        self.make_rows = rows
        self.rows: dict[str, list[dict]] = {name: [] for name in UNCERTAINTY_REFERENCES}
        self.curves: dict[str, list[calibration.Sparsification]] = {name: [] for name in UNCERTAINTY_REFERENCES}

    def add(self, batch: dict[str, Any], image: torch.Tensor, seed: int) -> None:
        """`batch` in the output's bands (`lr_rgb_view`), `image` the model's B×C×H×W output."""
        if not self.metrics:
            return
        error = absolute_error(image, batch["hr"])
        for name, make in UNCERTAINTY_REFERENCES.items():
            uncertainty = make(batch).float().to(error.device)
            values = {}
            if "unc_spearman" in self.metrics:
                values["unc_spearman"] = calibration.spearman(uncertainty, error)
            if "ause" in self.metrics:
                values["ause"] = calibration.ause(uncertainty, error)
            self.rows[name].extend(self.make_rows(batch, seed, values))
            self.curves[name].append(calibration.sparsification(uncertainty.cpu(), error.cpu()))
