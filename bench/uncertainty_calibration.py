"""Calibration of every `sampler.uncertainty` definition and of the free maps, from one sampling pass.

    python bench/uncertainty_calibration.py experiments/quickstart.yaml ckpt=RUN data.root=DATA \\
        data.shards.test='val-*.tar' data.num_lr=8 data.test_subset=16 [--out table.json]

The output image does not depend on how the map is defined (same seed, same noise, no extra random
draw), so one sampling run per scene yields every map: the sampler's accumulator is swapped for one
that runs every definition of sampling/uncertainty.py side by side (`pixel` over the last 1, 2 and
all fusion steps). Each map is scored as `evaluate` scores the model's (per-scene Spearman ρ and AUSE
against |output − HR|, mean and 95% t-interval over scenes), beside the free maps of
evaluation/uncertainty_references.py and of a few maps computed from the output itself (exploration,
`candidates`). The seconds each accumulator spends (the `pixel` decodes) are
timed against the whole sampling time.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from satdiffmoe.config import load_config
from satdiffmoe.data.lr_stack import lr_rgb_view
from satdiffmoe.evaluation import calibration
from satdiffmoe.evaluation.evaluator import Evaluator, aggregate
from satdiffmoe.evaluation.suite import absolute_error
from satdiffmoe.evaluation.uncertainty_references import UNCERTAINTY_REFERENCES
from satdiffmoe.sampling import fused_sampler
from satdiffmoe.sampling.uncertainty import BranchSpread
from satdiffmoe.training.checkpoints import load_sampler

VARIANTS = {"latent": ("latent", None), "pixel (last step)": ("pixel", 1), "pixel (last 2 fusions)": ("pixel", 2),
            "pixel (all fusions)": ("pixel", 1000), "latent+lr": ("latent+lr", None), "pixel+lr": ("pixel+lr", 1),
            "texture": ("texture", None)}
MAPS: list[dict[str, torch.Tensor]] = []
SECONDS: dict[str, float] = {name: 0.0 for name in VARIANTS}


class EverySpread:
    """Stands in for `BranchSpread` in the sampler: every variant accumulates; `finish` stashes them all."""

    def __init__(self, kind, steps, fusion_every, decode):
        self.parts = {name: BranchSpread(k, steps, fusion_every, decode, pixel_steps=n)
                      for name, (k, n) in VARIANTS.items()}

    def add(self, k, x0, valid):
        for name, part in self.parts.items():
            started = time.perf_counter()
            part.add(k, x0, valid)
            SECONDS[name] += time.perf_counter() - started

    def finish(self, x0_final, branch_images, valid, inputs, image):
        maps = {}
        for name, part in self.parts.items():
            started = time.perf_counter()
            maps[name] = part.finish(x0_final, branch_images, valid, inputs, image)
            SECONDS[name] += time.perf_counter() - started
        MAPS.append(maps)
        return maps["latent"]


def candidates(out, rgb) -> dict[str, torch.Tensor]:
    """Maps from the output alone or against the LRs (exploration beside the branch spreads)."""
    import torch.nn.functional as F

    from satdiffmoe.data.lr_stack import mean_bicubic_of

    image = out.image.float()
    reference = mean_bicubic_of(rgb["lr"], rgb["lr_valid"], rgb.get("lr_mask"), tuple(image.shape[-2:]))
    residual = (image - reference).abs().mean(1, keepdim=True) / 2
    local_mean = F.avg_pool2d(image, 3, 1, 1, count_include_pad=False)
    local_std = (F.avg_pool2d(image ** 2, 3, 1, 1, count_include_pad=False) - local_mean ** 2).clamp_min(0).sqrt()
    branches = out.branch_images.float()
    branch_residual = (branches - image[:, None]).abs().mean(2).mean(1, keepdim=True) / 2
    return {"|output − mean LR|": residual, "local std of output": local_std.mean(1, keepdim=True),
            "mean |branch − output|": branch_residual}


def score(uncertainty: torch.Tensor, error: torch.Tensor, mask_constant: bool) -> dict[str, torch.Tensor]:
    rho = calibration.spearman(uncertainty, error)
    ause = calibration.ause(uncertainty, error)
    if mask_constant:  # as the suite does for a model's map
        ause = torch.where(calibration.ranks_anything(uncertainty), ause, torch.full_like(ause, float("nan")))
    return {"unc_spearman": rho, "ause": ause}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("overrides", nargs="*")
    parser.add_argument("--out", default=None)
    parser.add_argument("--save", default=None, help="also torch.save the outputs, maps and LR stacks (.pt)")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    cfg = load_config(args.config, args.overrides)
    method = load_sampler(cfg.ckpt)
    evaluator = Evaluator(cfg)
    fused_sampler.BranchSpread = EverySpread
    values: dict[str, dict[str, list[float]]] = {}
    generator = torch.Generator().manual_seed(int(cfg.eval.seeds[0]))
    started = time.perf_counter()
    saved = []
    for batch in evaluator.scenes(cfg):
        out = method.sample(batch, cfg.sampler, generator)
        rgb = lr_rgb_view(batch, cfg.data.lr_rgb)
        error = absolute_error(out.image, batch["hr"])
        maps = dict(MAPS.pop())
        maps.update({name: make(rgb) for name, make in UNCERTAINTY_REFERENCES.items()})
        maps.update(candidates(out, rgb))
        if args.save:
            saved.append({"image": out.image, "branch_images": out.branch_images, "hr": batch["hr"],
                          "lr": rgb["lr"], "lr_valid": rgb["lr_valid"], "maps": maps})
        for name, uncertainty in maps.items():
            for metric, per_image in score(uncertainty.float(), error, name in VARIANTS).items():
                values.setdefault(name, {}).setdefault(metric, []).extend(per_image.tolist())
    wall = time.perf_counter() - started
    table = {name: {m: aggregate(v) for m, v in metrics.items()} for name, metrics in values.items()}
    report = {"config": args.overrides, "scenes": len(next(iter(values.values()))["ause"]), "sampling_s": wall,
              "accumulator_s": SECONDS, "maps": table}
    print(f"{'map':24s} {'rho':>16s} {'AUSE':>16s} {'seconds':>8s}")
    for name, metrics in table.items():
        cells = [f"{e['mean']:.3f} ± {e['ci95'] or 0:.3f}" if "mean" in e else "undefined" for e in metrics.values()]
        print(f"{name:24s} {cells[0]:>16s} {cells[1]:>16s} {SECONDS.get(name, 0.0):8.2f}")
    print(f"sampling and scoring: {wall:.1f} s for {report['scenes']} scenes")
    if args.save:
        torch.save(saved, args.save)
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
