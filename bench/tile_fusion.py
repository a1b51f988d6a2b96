"""Fused tiles (`sample --tiles fused`) against independent tiles blended (`--tiles independent`) on
stitched test scenes, so the HR of the whole scene exists.

    python bench/tile_fusion.py --ckpt runs/quickstart/runs/satdiffmoe/quickstart \\
        --data runs/quickstart/data --scenes 16 --out tile_fusion/ [--png docs/tile_fusion]

Every 4 consecutive test scenes with at least `--lrs` LRs become one 2×2 scene (HR 2·hr_size px). Its LR i is the four scenes'
i-th LR nearest in time, side by side (their clear-pixel masks likewise), with Δt_i the mean of the
four Δt's: N = `--lrs` LRs of 2·(hr_size/scale) px, which `sample` cuts into tiles of the training
size overlapping by a quarter tile (3 × 3 tiles of 16 px for the quickstart). Both modes run the
model's own sampler settings with the same seed on the same LRs, on the raw model output (no
`--match-lr`), and are scored against the stitched HR: the seam ratio at the tiles' handover lines
(evaluation/seams.py; also of the HR itself, on the same lines), LPIPS and PSNR (evaluation/suite.py).
`seam_vs_hr` is |seam ratio − the HR's| per scene: the scene's own content (a road on a handover line)
moves the ratio, so an output is seamless when its ratio is its HR's. `--png` writes the first
stitched scene's HR and both outputs as PNGs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from satdiffmoe.commands.sample import tile_plan, tile_sampler
from satdiffmoe.evaluation.evaluator import Evaluator, aggregate
from satdiffmoe.evaluation.seams import TileGrid, grid_seam_ratio
from satdiffmoe.evaluation.suite import MetricSuite
from satdiffmoe.sampling.tiling import sample_tiled
from satdiffmoe.training.checkpoints import load_sampler

MODES = ("independent", "fused")


def stitch(scenes: list[dict], lrs: int) -> dict:
    """Four scenes (batch rows) -> one 2×2 scene: HR C×2H×2W, LR N×C×2h×2w, mask N×2h×2w, Δt N."""
    picked = []
    for scene in scenes:
        dt = scene["dt"].abs().masked_fill(~scene["lr_valid"].bool(), float("inf"))
        order = dt.argsort()[:lrs]
        picked.append({"lr": scene["lr"][order], "mask": scene["lr_mask"][order], "dt": scene["dt"][order]})

    def grid(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([torch.cat(values[:2], -1), torch.cat(values[2:], -1)], -2)

    return {"hr": grid([s["hr"] for s in scenes]), "lr": grid([p["lr"] for p in picked]),
            "mask": grid([p["mask"] for p in picked]), "dt": torch.stack([p["dt"] for p in picked]).mean(0),
            "keys": [s["key"] for s in scenes]}


def rows(batches: list[dict]) -> list[dict]:
    """Per-scene dicts out of the evaluator's batches."""
    out = []
    for batch in batches:
        for i in range(len(batch["key"])):
            out.append({name: (value[i] if torch.is_tensor(value) or isinstance(value, list) else value)
                        for name, value in batch.items()})
    return out


def to_png(image: torch.Tensor, path: Path) -> None:
    pixels = ((image.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--data", required=True, help="the SynthSat folder the model was trained on (its test split)")
    parser.add_argument("--scenes", type=int, default=16, help="stitched scenes (each uses 4 test scenes)")
    parser.add_argument("--lrs", type=int, default=4, help="LRs per stitched scene")
    parser.add_argument("--shards", default="test-*.tar", help="the split's shards inside --data (default the test split), e.g. 'val-*.tar'")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--png", default=None, help="folder for the first scene's hr.png, independent.png, fused.png")
    args = parser.parse_args()
    pipe = load_sampler(args.ckpt, need_lr=True)
    cfg = pipe.cfg
    cfg.data.root = args.data
    cfg.data.num_lr = max(8, args.lrs)
    cfg.data.shards.test = str(Path(args.data) / args.shards)
    cfg.eval.metrics = ["lpips", "psnr"]
    # SynthSat scenes have 1 to 8 LRs: only those with at least --lrs are stitched, in test-split order
    test = [s for s in rows(Evaluator(cfg).scenes(cfg)) if int(s["lr_valid"].sum()) >= args.lrs]
    if len(test) < 4 * args.scenes:
        raise SystemExit(f"{len(test)} test scenes make only {len(test) // 4} stitched scenes; pass --scenes "
                         f"{len(test) // 4}")
    suite = MetricSuite(cfg.eval)
    unavailable = suite.unavailable(3, 2 * cfg.data.hr_size, has_hr=True, has_lr=False, has_uncertainty=False)
    sampler = pipe.sampler_config()
    scale = cfg.data.scale
    results: dict[str, dict[str, list[float]]] = {mode: {} for mode in (*MODES, "hr")}
    for index in range(args.scenes):
        scene = stitch(test[4 * index:4 * index + 4], args.lrs)
        height, width = scene["lr"].shape[-2:]
        tile, overlap, count = tile_plan(height, width, cfg)
        grid = TileGrid(tile, overlap, scale)
        dts = scene["dt"].tolist()
        outputs = {}
        for mode in MODES:
            started = time.perf_counter()
            with torch.no_grad():
                if mode == "fused":
                    image = pipe.sample_scene(scene["lr"], dts, scene["mask"], overlap=overlap, sampler=sampler,
                                              generator=torch.Generator().manual_seed(args.seed)).image[0]
                else:
                    image = sample_tiled(tile_sampler(pipe, sampler, dts, args.seed), scene["lr"], scene["mask"],
                                         tile=tile, overlap=overlap, scale=scale,
                                         batch_size=max(1, sampler.chunk_size // args.lrs))[0]
            seconds = time.perf_counter() - started
            outputs[mode] = image.float()
            values = suite.per_image({"hr": scene["hr"][None]}, image[None].float(), None, unavailable)
            record = results[mode]
            record.setdefault("seam", []).append(grid_seam_ratio(image, grid))
            record.setdefault("seconds", []).append(seconds)
            for name, value in values.items():
                record.setdefault(name, []).append(float(value[0]))
        results["hr"].setdefault("seam", []).append(grid_seam_ratio(scene["hr"], grid))
        print(f"scene {index} ({'+'.join(scene['keys'])}, {count} tiles): " + ", ".join(
            f"{mode} seam {results[mode]['seam'][-1]:.3f} lpips {results[mode]['lpips'][-1]:.4f} "
            f"{results[mode]['seconds'][-1]:.1f} s" for mode in MODES) + f"; HR seam {results['hr']['seam'][-1]:.3f}",
            flush=True)
        if args.png and index == 0:
            to_png(scene["hr"], Path(args.png) / "hr.png")
            for mode in MODES:
                to_png(outputs[mode], Path(args.png) / f"{mode}.png")
    for mode in MODES:  # the scene's content puts its own detail on the lines: the distance from the HR's ratio
        results[mode]["seam_vs_hr"] = [abs(a - b) for a, b in zip(results[mode]["seam"], results["hr"]["seam"])]
    paired = {name: aggregate([f - i for f, i in zip(results["fused"][name], results["independent"][name])])
              for name in ("seam", "seam_vs_hr", "lpips", "psnr")}
    summary = {"ckpt": str(args.ckpt), "shards": args.shards, "scenes": args.scenes, "lrs": args.lrs, "seed": args.seed,
               "sampler": sampler.to_dict(), "tile_grid": [tile, overlap, scale], "tiles_per_scene": count,
               "modes": {mode: {name: aggregate(values) for name, values in record.items()}
                         for mode, record in results.items()},
               "fused_minus_independent": paired, "per_scene": results}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tile_fusion.json").write_text(json.dumps(summary, indent=2))
    for mode in (*MODES, "hr"):
        cells = ", ".join(f"{name} {entry['mean']:.4f} ± {entry['ci95'] or 0:.4f}"
                          for name, entry in summary["modes"][mode].items())
        print(f"{mode}: {cells}")
    print("fused − independent: " + ", ".join(f"{name} {e['mean']:+.4f} ± {e['ci95'] or 0:.4f}"
                                              for name, e in paired.items()))


if __name__ == "__main__":
    main()
