"""Our metrics on anybody's images (the library part of `satdiffmoe score`, commands/score.py).

No checkpoint: P (an SR output) is scored against R (its HR) and, for the LR-consistency metrics,
against the LR images it was made from. P and R are two image files or two folders whose files are
matched by name; each `--lr` is a file (P a file) or a folder with files of the same names (P a
folder). PNG and GeoTIFF of any bit depth, scaled as `sample` does (`--value-max`).

`match_inputs` pairs the files, `score` computes the summary. Bad input is a UserError naming it: a
size or band-count mismatch, an unreadable file, NaN pixels, folders with no common names.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..sampling.image_io import GEOTIFF, PNG, read_raster
from .catalog import METRICS
from .evaluator import aggregate
from .seams import SEAM_LABELS, TileGrid, grid_seam_ratio
from .suite import MetricSuite, finite_or_none

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = GEOTIFF + PNG


def _images_in(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES}


def match_inputs(pred: Path, ref: Path | None, lrs: list[Path]) -> list[dict[str, Any]]:
    """[{name, pred, ref, lrs}] for every image to score; raises UserError naming what does not match."""
    for path in [pred, *([ref] if ref else []), *lrs]:
        if not path.exists():
            raise UserError(f"not found: {path}")
    if pred.is_file():
        if (ref and ref.is_dir()) or any(lr.is_dir() for lr in lrs):
            raise UserError("--pred is a file, so --ref and --lr must be files too (or make all of them folders)")
        return [{"name": pred.name, "pred": pred, "ref": ref, "lrs": lrs}]
    if (ref and not ref.is_dir()) or any(not lr.is_dir() for lr in lrs):
        raise UserError("--pred is a folder, so --ref and every --lr must be folders with files of the same names")
    names = _images_in(pred)
    if not names:
        raise UserError(f"{pred} holds no PNG or GeoTIFF images")
    common = set(names)
    for folder in ([ref] if ref else []) + lrs:
        theirs = set(_images_in(folder))
        if not common & theirs:
            raise UserError(f"{pred} and {folder} have no file names in common; outputs are matched to "
                            "references by file name")
        common &= theirs
    skipped = sorted(set(names) - common)
    if skipped:
        log.warning("%d prediction(s) have no match in every folder and are not scored: %s", len(skipped),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return [{"name": n, "pred": pred / n, "ref": ref / n if ref else None, "lrs": [lr / n for lr in lrs]}
            for n in sorted(common)]


def load_item(item: dict[str, Any], value_max: float | None) -> dict[str, Any]:
    """One image's tensors as an evaluation batch of one (hr, lr, lr_valid) and its prediction."""
    pred = torch.from_numpy(read_raster(item["pred"], value_max).pixels)[None]
    batch: dict[str, Any] = {}
    if item["ref"] is not None:
        hr = torch.from_numpy(read_raster(item["ref"], value_max).pixels)[None]
        if hr.shape != pred.shape:
            raise UserError(f"{item['pred']} is {_shape(pred)} but its reference {item['ref']} is {_shape(hr)}; "
                            "an output and its HR must have the same size and bands")
        batch["hr"] = hr
    if item["lrs"]:
        lrs = [torch.from_numpy(read_raster(p, value_max).pixels) for p in item["lrs"]]
        for path, lr in zip(item["lrs"], lrs):
            if lr.shape != lrs[0].shape:
                raise UserError(f"{path} is {_shape(lr[None])} but {item['lrs'][0]} is {_shape(lrs[0][None])}; "
                                "the LR images of one output must share size and bands")
        lr = torch.stack(lrs)[None]
        if lr.shape[2] != pred.shape[1]:
            raise UserError(f"{item['lrs'][0]} has {lr.shape[2]} bands but {item['pred']} has {pred.shape[1]}")
        if pred.shape[-1] % lr.shape[-1] or pred.shape[-2] % lr.shape[-2] or \
                pred.shape[-1] // lr.shape[-1] != pred.shape[-2] // lr.shape[-2] or pred.shape[-1] == lr.shape[-1]:
            raise UserError(f"{item['pred']} ({_shape(pred)}) is not an integer upscaling (> 1) of its LR "
                            f"{item['lrs'][0]} ({_shape(lr[0])})")
        batch.update(lr=lr, lr_valid=torch.ones(1, lr.shape[1], dtype=torch.bool))
    return {"pred": pred, "batch": batch}


def _shape(x: torch.Tensor) -> str:
    return f"{x.shape[1]} bands × {x.shape[-2]}×{x.shape[-1]} px"


def score(items: list[dict[str, Any]], eval_cfg: Any, value_max: float | None = None,
          tile_grid: TileGrid | None = None) -> dict[str, Any]:
    """The summary {"num_images", "metrics": {name: entry}, "rows": [...]} of the matched images; with
    `tile_grid` (the tiling `sample` used) also the seam ratio of each output, and of its reference
    on the same lines (what the scene itself has there)."""
    suite = MetricSuite(eval_cfg)
    first = load_item(items[0], value_max)
    channels = int(first["pred"].shape[1])
    unavailable = suite.unavailable(channels, min(first["pred"].shape[-2:]), has_hr="hr" in first["batch"],
                                    has_lr="lr" in first["batch"], has_uncertainty=False)
    rows, outputs, targets = [], [], []
    for item in items:
        loaded = first if item is items[0] else load_item(item, value_max)
        if loaded["pred"].shape[1] != channels:
            raise UserError(f"{item['pred']} has {loaded['pred'].shape[1]} bands but {items[0]['pred']} has {channels}")
        values = suite.per_image(loaded["batch"], loaded["pred"], None, unavailable)
        if tile_grid is not None:
            values["seam"] = [grid_seam_ratio(loaded["pred"][0], tile_grid)]
            if "hr" in loaded["batch"]:
                values["seam_ref"] = [grid_seam_ratio(loaded["batch"]["hr"][0], tile_grid)]
        rows.append({"name": item["name"], **{k: finite_or_none(v[0]) for k, v in values.items()}})
        outputs.append(loaded["pred"])
        if "hr" in loaded["batch"]:
            targets.append(loaded["batch"]["hr"])
    metrics: dict[str, Any] = {}
    same_size = len({tuple(o.shape) for o in outputs}) == 1
    set_level = {}
    if targets and same_size:
        set_level = suite.set_level(torch.cat(outputs), torch.cat(targets), unavailable)
    for name in suite.metrics:
        if name in unavailable:
            metrics[name] = {"unavailable": unavailable[name]}
        elif name in set_level:
            metrics[name] = set_level[name]
        elif any(name in row for row in rows):
            metrics[name] = aggregate([row.get(name) for row in rows])
        elif not same_size and not METRICS[name].per_image:
            metrics[name] = {"unavailable": "a set-level score needs images of one size"}
        else:
            metrics[name] = {"unavailable": "undefined on every image"}
    for name in SEAM_LABELS if tile_grid is not None else ():
        if any(name in row for row in rows):
            metrics[name] = aggregate([row.get(name) for row in rows])
    return {"num_images": len(items), "metrics": metrics, "rows": rows}
