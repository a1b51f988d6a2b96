"""What SynthSat's LR dates can show at best: clean full-resolution renders scored against the HR.

    python -m data_prep.synthetic_ceiling --num-scenes 640 --seed 0      # the quickstart's test split

An LR is the scene on another day (season, crop rotation, conversions, construction) seen through
clouds, optics, a ×scale detector and noise. Rendering the same place on the LR days at full
resolution, without any of the acquisition, leaves only the change in time: an SR method that
recovered the scene on its LR dates perfectly would score these numbers against the day-0 HR.

* `nearest`: the clean render on the LR day nearest the HR date;
* `random`: the clean render on any one LR day (averaged over every LR image);
* `mean`: the pixel mean of the clean renders on all LR days (what averaging the LRs tends to).

The rows use the evaluation's own PSNR and LPIPS (`satdiffmoe.evaluation.metrics`), on the scenes of
one split as `satdiffmoe prepare synthetic` assigns them.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from satdiffmoe.data.synthetic_scene import render
from satdiffmoe.evaluation import metrics as M

from .synthetic import ScenePlan, SynthSatParams, assign_splits, plan_scene

ROWS = ("nearest", "random", "mean")


def clean_renders(plan: ScenePlan) -> tuple[np.ndarray, np.ndarray]:
    """The HR (C×H×W) and the clean renders on the LR days (N×C×H×W), in [0, 1]."""
    return render(plan.land, 0.0), np.stack([render(plan.land, float(day)) for day in plan.days])


def ceilings(plans: list[ScenePlan], lpips_net: torch.nn.Module | None = None) -> dict[str, dict[str, float]]:
    """Mean PSNR (and LPIPS with a network) of each row's renders against their scene's HR."""
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {name: [] for name in ROWS}
    for plan in plans:
        hr, clean = clean_renders(plan)
        pairs["nearest"].append((clean[np.argmin(np.abs(plan.days))], hr))
        pairs["random"] += [(image, hr) for image in clean]
        pairs["mean"].append((clean.mean(0), hr))
    result = {}
    for name, row in pairs.items():
        pred, target = (torch.from_numpy(np.stack(images)).float() * 2 - 1 for images in zip(*row))
        scores = {"psnr": float(M.psnr(pred, target).mean())}
        if lpips_net is not None:
            scores["lpips"] = float(M.lpips(pred, target, lpips_net).mean())
        result[name] = scores
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-scenes", type=int, default=640, help="as given to `prepare synthetic`")
    parser.add_argument("--seed", type=int, default=0, help="as given to `prepare synthetic`")
    parser.add_argument("--hr-size", type=int, default=64)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--val-frac", type=float, default=0.1)
    parser.add_argument("--test-frac", type=float, default=0.1)
    parser.add_argument("--no-lpips", action="store_true", help="PSNR only (no LPIPS weights needed)")
    args = parser.parse_args(argv)
    params = SynthSatParams(hr_size=args.hr_size, seed=args.seed)
    splits = assign_splits(args.num_scenes, args.val_frac, args.test_frac, args.seed)
    plans = [plan_scene(params, index) for index, split in enumerate(splits) if split == args.split]
    result = ceilings(plans, None if args.no_lpips else M.load_lpips(None))
    print(f"{len(plans)} {args.split} scenes (--num-scenes {args.num_scenes} --seed {args.seed})")
    print("| clean full-resolution render | PSNR (dB) | LPIPS |\n|---|---:|---:|")
    for name, scores in result.items():
        print(f"| {name} | {scores['psnr']:.2f} | {scores.get('lpips', float('nan')):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
