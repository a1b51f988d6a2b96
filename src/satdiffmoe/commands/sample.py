"""`satdiffmoe sample --ckpt C --lr a.tif b.tif --dt -40 3 --out sr.tif [--uncertainty u.tif] [--value-max V] [sampler.*=...]`.

Super-resolves a user's own LR stack with the fused sampler. Everything is validated before the
model loads (one UserError line per problem), including `--max-side`: cost grows with the number of
tiles, and three 400×400 LRs ran for over 17 minutes on CPU before anything said so. Images larger
than the training LR size are tiled (sampling/tiling.py). `--tiles fused` (the default) fuses the
overlapping tiles inside the sampler at every step (sampling/scene_sampler.py), with a progress bar
over steps and, after the first step, a time estimate; `--tiles independent` samples each tile on
its own, `chunk_size // N` tiles per batch so one batch fills one UNet call, and blends the HR tiles,
with a progress bar over tiles. Either way the tile count and UNet-call count are printed (stderr)
before sampling, with the `score --tile-grid` values that measure the output's seams. GeoTIFF
georeferencing is carried to the outputs with `scale`-times finer pixels. Pixels map to [-1, 1] through the training manifest's LR normalisation and back through
its HR one (`--normalisation`, data/radiometry.py) unless `--value-max` is given or none is recorded.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..interrupts import held, keeping
from . import add_command

if TYPE_CHECKING:
    import numpy as np

    from ..data.radiometry import Normalisation
    from ..sampling.image_io import Raster

log = logging.getLogger(__name__)
HELP = "super-resolve your own LR stack (PNG/GeoTIFF)"
# More LR values than this outside the interval the model was trained on: refused, not clipped (clipping
# all of them made constant 255 or all-0 outputs, exit 0). A few stray values are clipped with a warning.
CLIP_LIMIT = 0.05


def register(subparsers) -> None:
    p = add_command(subparsers, "sample", HELP)
    p.add_argument("--ckpt", required=True,
                   help="a SatDiffMoE / ControlNet / DiffusionSat checkpoint (.ckpt), its run folder, or a pipeline "
                        "folder written by `satdiffmoe export`")
    p.add_argument("--lr", nargs="+", required=True, help="LR images (PNG or GeoTIFF), same size and bands")
    p.add_argument("--dt", nargs="+", required=True, help="Δt in days per LR (t_LR - t_HR); 'nan' = unknown")
    p.add_argument("--mask", nargs="*", default=None, help="optional per-LR validity masks (1 = clear)")
    p.add_argument("--out", required=True, help="output HR image (.tif keeps the georeference, or .png)")
    p.add_argument("--uncertainty", default=None,
                   help="optional per-pixel uncertainty map (sampler.uncertainty: the output's local std by default, or the branches' spread); "
                        ".tif = raw float32 values (keeps the georeference), .png = 8-bit grey scaled to the "
                        "map's own maximum (255 = its largest value, so PNGs of two runs are not comparable)")
    p.add_argument("--value-max", type=float, default=None,
                   help="pixel value meaning full scale, as the training records' value_max (default: the dtype's "
                        "maximum, 255 / 65535; e.g. 4095 for 12-bit data stored as uint16); input and output are "
                        "then fractions of it, and the training manifest's normalisation is not used")
    p.add_argument("--normalisation", choices=["manifest", "value-max"], default=None,
                   help="how pixels map to the model's [-1, 1] and back. manifest (the default when the checkpoint's "
                        "data.root/manifest.json records normalisation.record and --value-max is not given): the "
                        "manifest's LR normalisation on the input file's raw values (e.g. Sentinel-2 DN stretched "
                        "per band over mean ± kσ), clipped to it with a counted warning, and its HR inverse on the "
                        "output, written in the HR's units: integers for an integer interval (8-bit 0..255, "
                        "14-bit DN), float32 GeoTIFF otherwise (reflectance 0..1); value-max: fractions of "
                        "--value-max (default the dtype's maximum) in and out, in the LR's units")
    p.add_argument("--max-side", type=int, default=1024,
                   help="refuse LR images whose longer side exceeds this many px before loading the model "
                        "(default 1024; time grows with the tile count, which is printed before sampling)")
    p.add_argument("--match-lr", choices=["mean-std", "histogram", "none"], default="mean-std",
                   help="match each output band to the LR stack's clear pixels before writing, so a model trained "
                        "on another palette keeps the scene's colours: mean-std (default) = a linear gain and "
                        "offset per band, which keeps the model's detail and contrast order; histogram = the LRs' "
                        "full distribution, which also fixes non-linear palettes but forces the blurrier LR "
                        "distribution onto the finer output and can band when the LRs have few pixels; none = "
                        "the model's own values")
    p.add_argument("--tiles", choices=["fused", "independent"], default="fused",
                   help="how an image larger than one training tile is sampled: fused (default) = the overlapping "
                        "tiles' estimates are averaged inside the sampler at every step, so neighbouring tiles agree "
                        "on their content (MultiDiffusion; memory grows with the image area); independent = every "
                        "tile sampled on its own and the HR tiles blended with a raised-cosine window")
    p.add_argument("--seed", type=int, default=0, help="noise seed, 0 to 4294967295 (default 0)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="sampler overrides, e.g. sampler.nfe=25")


def parse_dt(values: Sequence[str]) -> list[float]:
    parsed = []
    for value in values:
        try:
            parsed.append(float(value))
        except ValueError:
            if "=" in value:  # argparse gave --dt the override that followed it
                raise UserError(f"--dt took the override {value!r}; put key=value overrides before --lr/--dt "
                                "or after another option (e.g. after --out)") from None
            raise UserError(f"--dt value {value!r} is not a number of days (use 'nan' for unknown)") from None
        if math.isinf(parsed[-1]):
            raise UserError(f"--dt value {value!r} must be finite days (or 'nan' for unknown)")
    return parsed


def _check_writable(path: str | None, flag: str) -> None:
    from ..sampling.image_io import GEOTIFF, PNG, check_can_write

    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file name inside it, e.g. {target / 'sr.tif'}")
    if target.suffix.lower() not in GEOTIFF + PNG:
        raise UserError(f"{flag} {path}: use a .tif (keeps the georeference) or .png file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise UserError(f"{flag} {path}: folder {folder} does not exist or is not writable")
    check_can_write(target)


def check_distinct_outputs(args) -> None:
    """Outputs must not resolve to an input or to each other: `--out a.png` with `--lr a.png ...`
    overwrote the user's input with the result, and `--uncertainty` = `--out` lost the SR image."""
    outputs = {"--out": args.out, "--uncertainty": args.uncertainty}
    inputs = [("--lr", p) for p in args.lr] + [("--mask", p) for p in args.mask or []] + [("--ckpt", args.ckpt)]
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        resolved = Path(path).resolve()
        for in_flag, in_path in inputs:
            if Path(in_path).resolve() == resolved:
                raise UserError(f"{flag} {path} is also an input ({in_flag} {in_path}); writing it would destroy "
                                "that input, so choose another output file name")
        if resolved in seen:
            raise UserError(f"{flag} and {seen[resolved]} are the same file {path}; give each output its own name")
        seen[resolved] = flag


def read_stack(paths: Sequence[str], mask_paths: Sequence[str] | None, dts: Sequence[float],
               value_max: float | None = None,
               lr_normalisation: Normalisation | None = None) -> tuple[list[Raster], np.ndarray]:
    """Read and cross-check the LR images (and masks): equal sizes and bands, one Δt each.

    `value_max` is the pixel value meaning full scale (the training records' `value_max`); brighter
    pixels are clipped, as `satdiffmoe prepare` clips them. `lr_normalisation` (the training
    manifest's) replaces it: its `forward` on the raw values, clipped to [-1, 1] as the records were.
    """
    import numpy as np

    from ..sampling.image_io import read_mask, read_raster

    if value_max is not None and not (math.isfinite(value_max) and value_max > 0):
        raise UserError(f"--value-max must be positive and finite, got {value_max:g}")
    if len(dts) != len(paths):
        raise UserError(f"got {len(paths)} --lr images but {len(dts)} --dt values; give one Δt per image")
    if mask_paths and len(mask_paths) != len(paths):
        raise UserError(f"got {len(paths)} --lr images but {len(mask_paths)} --mask files; give one mask per image")
    seen: dict[Path, str] = {}
    for path in paths:  # one observation counted twice would outweigh the others in the fusion
        if Path(path).resolve() in seen:
            raise UserError(f"--lr {path} is the same file as {seen[Path(path).resolve()]}; each LR is one "
                            "observation, so drop the repeat")
        seen[Path(path).resolve()] = path
    if lr_normalisation is not None:
        rasters = [read_raster(p, normalise=_manifest_forward(lr_normalisation, p)) for p in paths]
        for path, raster in zip(paths, rasters):
            _clip_to_training_interval(path, raster.pixels, lr_normalisation)
    else:
        rasters = [read_raster(p, value_max) for p in paths]
    for path, raster in zip(paths, rasters):
        outside = int(np.count_nonzero((raster.pixels > 1) | (raster.pixels < -1))) if lr_normalisation is None else 0
        if outside > CLIP_LIMIT * raster.pixels.size:  # the output would be flat full scale (or black)
            top = (float(raster.pixels.max()) + 1) / 2 * raster.value_max
            raise UserError(f"{path}: {100 * outside / raster.pixels.size:.0f} % of its values lie outside 0..--value-max "
                            f"{raster.value_max:g} (up to {top:g}); clipping them leaves no image. Pass --value-max "
                            f"{top:g} (its largest value), or the full scale of its data")
        if outside:
            log.warning("%s has %d values outside 0..--value-max %g (up to %g); they are clipped", path, outside,
                        raster.value_max, (raster.pixels.max() + 1) / 2 * raster.value_max)
            np.clip(raster.pixels, -1, 1, out=raster.pixels)
    first = rasters[0].pixels.shape
    for path, raster in zip(paths, rasters):
        if (raster.crs is None) != (rasters[0].crs is None):
            plain, geo = (path, paths[0]) if raster.crs is None else (paths[0], path)
            raise UserError(f"{plain} has no georeference but {geo} has one; give every LR as a GeoTIFF on one grid "
                            "(or every LR without georeference, e.g. all PNG)")
        if raster.crs != rasters[0].crs:  # fusing them would mix places; the output took the first's grid
            raise UserError(f"{path} is in CRS {raster.crs or 'none'} but {paths[0]} is in {rasters[0].crs or 'none'}; "
                            "reproject every LR image to one CRS and grid first (e.g. gdalwarp -t_srs)")
        if raster.pixels.shape != first:
            raise UserError(f"{path} is {raster.pixels.shape[0]} bands × {raster.pixels.shape[1]}×"
                            f"{raster.pixels.shape[2]} px but {paths[0]} is {first[0]} × {first[1]}×{first[2]};"
                            " all LR images must share size and bands (resample them first)")
    check_one_grid(paths, rasters)
    masks = np.ones((len(paths),) + first[1:], dtype=np.float32)
    for i, path in enumerate(mask_paths or []):
        mask = read_mask(path)
        if mask.shape != first[1:]:
            raise UserError(f"mask {path} is {mask.shape[0]}×{mask.shape[1]} px but the LR images are "
                            f"{first[1]}×{first[2]}")
        masks[i] = mask
    for i, raster in enumerate(rasters):
        if raster.valid is not None:
            masks[i] *= raster.valid
    return rasters, masks


def check_float_output(out: str, like: Raster, mapping) -> None:
    """Float LRs give a float32 output in their units (the README), which only a GeoTIFF holds."""
    from ..sampling.image_io import PNG

    if mapping is None and like.floating and Path(out).suffix.lower() in PNG:
        raise UserError(f"--out {out}: the LR images hold float values, and the output is written as float32 in "
                        "their units, which a PNG cannot hold; write a .tif")


def drop_empty(paths: Sequence[str], rasters: list, masks: np.ndarray, dts: list[float]):
    """LRs without one valid pixel (all nodata, or masked out) observe nothing: dropped, with a count."""
    keep = [i for i in range(len(rasters)) if masks[i].any()]
    if len(keep) == len(rasters):
        return rasters, masks, dts
    if not keep:
        raise UserError(f"no --lr image has a valid pixel (all nodata or masked out): {', '.join(paths)}")
    dropped = [paths[i] for i in range(len(rasters)) if i not in keep]
    log.warning("dropped %d of %d LR images without a valid pixel (all nodata or masked out): %s", len(dropped),
                len(rasters), ", ".join(dropped))
    return [rasters[i] for i in keep], masks[keep], [dts[i] for i in keep]


def check_one_grid(paths: Sequence[str], rasters: Sequence[Raster], tolerance: float = 0.1) -> None:
    """LRs are fused pixel by pixel, so they must sample one grid: the same pixel size and orientation,
    origins less than `tolerance` of a pixel apart (same CRS is checked before)."""
    first = rasters[0].transform
    if first is None:
        return
    pixel = max(abs(first.a), abs(first.e)) or 1.0
    for path, raster in zip(paths[1:], rasters[1:]):
        t = raster.transform
        shape_differs = any(abs(x - y) > 1e-6 * pixel for x, y in ((t.a, first.a), (t.b, first.b), (t.d, first.d),
                                                                   (t.e, first.e)))
        offset = math.hypot(t.c - first.c, t.f - first.f) / pixel
        if shape_differs or offset > tolerance:
            raise UserError(f"{path} and {paths[0]} are not on one grid: pixels of {abs(t.a):g}×{abs(t.e):g} vs "
                            f"{abs(first.a):g}×{abs(first.e):g} CRS units, origins {offset:.3g} px apart; fusing "
                            "them would mix places: resample every LR onto one grid first (e.g. gdalwarp -tr -te)")


def _manifest_forward(normalisation: Normalisation, path: str):
    """`normalisation.forward` for read_raster, its band-count mismatch as one line naming the file."""
    def forward(values: np.ndarray) -> np.ndarray:
        try:
            return normalisation.forward(values)
        except ValueError:
            raise UserError(f"{path} has {values.shape[0]} bands but the training manifest's LR normalisation has "
                            f"{len(normalisation.low)}; select the training bands first (or pass "
                            "--normalisation value-max)") from None
    return forward


def _clip_to_training_interval(path: str, pixels: np.ndarray, normalisation: Normalisation) -> None:
    """Clip manifest-normalised pixels to [-1, 1] in place, as the converter clipped the training records,
    with a counted warning."""
    import numpy as np

    outside = int(np.count_nonzero((pixels < -1) | (pixels > 1)))
    if not outside:
        return
    share = outside / pixels.size
    if share > CLIP_LIMIT:  # what is left after clipping is no image of the scene
        raise UserError(f"{path}: {100 * share:.0f} % of its values lie outside the training LR interval "
                        f"{normalisation.summary()}; is the input in {normalisation.units}? If not, pass "
                        "--value-max V (its full scale, e.g. 65535 for uint16, 1 for reflectance) to map it by that")
    log.warning("%s: %d of %d values (%.1f %%) lie outside the training LR interval %s; they are clipped to it",
                path, outside, pixels.size, 100 * share, normalisation.summary())
    np.clip(pixels, -1, 1, out=pixels)


def choose_normalisation(args) -> tuple[Normalisation, Normalisation] | None:
    """The training manifest's (LR, HR) normalisation to map through, or None for fractions of --value-max.

    Default: the manifest's `normalisation.record` when the model's data.root has one and --value-max
    is not given; `--normalisation` forces either (manifest without a record is an error). Read from
    the stored config before the model loads, so its problems are found before sampling.
    """
    from ..data.radiometry import integer_dtype, manifest_normalisation, read_manifest
    from ..sampling.image_io import PNG

    choice = getattr(args, "normalisation", None)
    if choice == "manifest" and args.value_max is not None:
        raise UserError("--normalisation manifest maps pixels through the training manifest and --value-max by a "
                        "full-scale value; give one of them")
    if choice == "value-max" or (choice is None and args.value_max is not None):
        return None
    try:
        cfg = stored_config(args.ckpt)
    except (UserError, OSError, ValueError):  # a bad --ckpt is named when the model loads
        cfg = None
    root = None if cfg is None else cfg.data.root
    manifest = None if root is None else read_manifest(root)[0]
    try:
        mapping = manifest_normalisation(manifest)
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{root}/manifest.json: normalisation.record is malformed ({exc}); fix it, or pass "
                        "--value-max") from None
    if mapping is None:
        if choice == "manifest":
            raise UserError(f"--normalisation manifest: the model's training data ({root or args.ckpt}) has no "
                            "manifest.json with normalisation.record; pass --value-max (or --normalisation value-max)")
        return None
    if integer_dtype(mapping[1]) is None and Path(args.out).suffix.lower() in PNG:
        raise UserError(f"--out {args.out}: the model's HR is {mapping[1].summary()} (training manifest), float "
                        "values a PNG cannot hold; write a .tif, or pass --normalisation value-max")
    return mapping


def describe_mapping(args, mapping: tuple[Normalisation, Normalisation] | None, value_max: float,
                     manifest_has_one: bool) -> str:
    """`sample`'s stderr line saying how input pixels became [-1, 1] and how the output was written."""
    from ..data.radiometry import integer_dtype

    if mapping is not None:
        lr, hr = mapping
        dtype = integer_dtype(hr)
        return (f"input: manifest LR normalisation ({lr.summary()} -> [-1, 1]); output: manifest HR normalisation "
                f"([-1, 1] -> {hr.summary()}, written as {'float32' if dtype is None else dtype.name})")
    if not manifest_has_one:
        why = "no manifest normalisation"
    elif args.value_max is not None:
        why = "given, so the manifest normalisation is not used"
    else:
        why = "--normalisation value-max, so the manifest normalisation is not used"
    source = "" if args.value_max is not None else ", the dtype's maximum"
    return f"input/output: --value-max {value_max:g}{source} ({why})"


def stored_config(ckpt: str):
    """The model's training config without reading its weights: an exported pipeline's model_index.json,
    or a checkpoint's hyper-parameters (mmap leaves the tensors on disk)."""
    import json

    import torch

    from ..config import config_from_dict
    from ..config.loading import as_plain
    from ..pipelines.registry import is_pipeline_folder
    from ..training.checkpoints import resolve_checkpoint

    if is_pipeline_folder(ckpt):
        config = json.loads((Path(ckpt) / "model_index.json").read_text()).get("training_config")
        return config_from_dict(config) if config is not None else None
    path = resolve_checkpoint(ckpt)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a zip checkpoint (or unreadable): load_sampler names the problem
        return None
    config = (checkpoint.get("hyper_parameters") or {}).get("config")
    return config_from_dict(as_plain(config)) if config is not None else None


def describe_sampler(sampler, overridden: dict) -> str:
    """One line: the settings this run samples with, and which came from the command line (the rest
    are the model's own, the ones its evaluation used)."""
    shown = ("nfe", "scheduler", "timestep_spacing", "fusion_every", "consensus", "guidance_scale")
    settings = " ".join(f"{key}={getattr(sampler, key)}" for key in shown)
    given = ", ".join(sorted(overridden)) or "none"
    return f"sampler: {settings} (the model's own settings; overridden here: {given})"


def sampler_overrides(overrides: Sequence[str]) -> dict:
    """`sampler.key=value` arguments -> {key: value}; anything else cannot apply to a trained model."""
    from omegaconf import OmegaConf

    others = [item for item in overrides if not item.startswith("sampler.")]
    if others:
        raise UserError(f"sample takes sampler.* overrides only (the model is fixed by its checkpoint); "
                        f"cannot apply {', '.join(others)}")
    try:
        parsed = OmegaConf.to_container(OmegaConf.from_dotlist(list(overrides)))
    except Exception as exc:  # omegaconf's grammar errors
        raise UserError(f"cannot parse the overrides {' '.join(overrides)}: {exc}") from None
    return parsed.get("sampler", {})


def tile_plan(height: int, width: int, cfg, align: int = 1) -> tuple[int, int, int]:
    """(LR tile side, overlap, number of tiles) for an h×w LR image under the training config;
    `align`: LR px between tile starts (scene mode: the pipeline's `tile_align`)."""
    from ..sampling.tiling import tile_grid

    tile = cfg.data.hr_size // cfg.data.scale
    overlap = max(1, tile // 4)
    return tile, overlap, len(tile_grid(height, width, tile, overlap, align))


def check_max_side(height: int, width: int, max_side: int, cfg) -> None:
    if max(height, width) <= max_side:
        return
    tiles = "many tiles"
    if cfg is not None:
        tile, _, count = tile_plan(height, width, cfg)
        tiles = f"{count} tiles of {tile} px"
    raise UserError(f"the LR images are {height}×{width} px, longer than --max-side {max_side}; they would need "
                    f"{tiles}; crop them, or pass --max-side {max(height, width)} to run anyway")


def tile_sampler(pipe, sampler, dts: Sequence[float], seed: int):
    """(lr tiles, mask tiles) -> (HR tiles, uncertainty) through the pipeline, one scene per tile."""
    import torch

    generator = torch.Generator(device=pipe.device).manual_seed(seed)

    def sample(lr: torch.Tensor, mask: torch.Tensor):
        tiles, branches = lr.shape[:2]
        dt = torch.tensor(list(dts), dtype=torch.float32).expand(tiles, branches)
        out = pipe(lr, dt=dt, lr_mask=mask, sampler=sampler, generator=generator)
        return out.image.float().cpu(), out.uncertainty.float().cpu()

    return sample


def sample_scene(pipe, sampler, lr, mask, dts: Sequence[float], overlap: int, seed: int):
    """The whole LR stack as one scene of fused tiles (`--tiles fused`) -> (HR, uncertainty), C×H×W each."""
    import torch

    generator = torch.Generator(device=pipe.device).manual_seed(seed)

    def report(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    out = pipe.sample_scene(lr, list(dts), mask, overlap=overlap, sampler=sampler, generator=generator,
                            progress=True, report=report)
    return out.image[0].float().cpu(), out.uncertainty[0].float().cpu()


def run(args) -> int:
    outputs = [p for p in (args.out, args.uncertainty) if p]
    kept = ", ".join(f"{p} is untouched" if Path(p).exists() else f"no {p}" for p in outputs)
    with keeping(f"nothing written ({kept})"):
        return _run(args)


def _run(args) -> int:
    from ..config.loading import check_seed

    check_seed(args.seed, "--seed")  # torch's manual_seed(2**64) raised only once the model had loaded
    dts = parse_dt(args.dt)
    _check_writable(args.out, "--out")
    _check_writable(args.uncertainty, "--uncertainty")
    check_distinct_outputs(args)
    mapping = choose_normalisation(args)  # (LR, HR) of the training manifest, or None: --value-max
    rasters, masks = read_stack(args.lr, args.mask, dts, args.value_max, None if mapping is None else mapping[0])
    rasters, masks, dts = drop_empty(args.lr, rasters, masks, dts)
    check_float_output(args.out, rasters[0], mapping)
    height, width = rasters[0].pixels.shape[1:]
    if max(height, width) > args.max_side:
        check_max_side(height, width, args.max_side, stored_config(args.ckpt))

    import numpy as np
    import torch

    from ..sampling.image_io import output_set, write_raster, write_values
    from ..sampling.tiling import sample_tiled
    from ..training.checkpoints import load_sampler

    sampler_settings = sampler_overrides(args.overrides or [])
    pipe = load_sampler(args.ckpt, need_lr=True)
    try:
        sampler = pipe.sampler_config(sampler_settings)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    cfg = pipe.cfg
    if cfg is None:
        raise UserError(f"{args.ckpt} does not record its training config; export it again with this version")
    bands = rasters[0].pixels.shape[0]
    from ..data.lr_stack import lr_band_count

    if bands != lr_band_count(cfg.data):
        raise UserError(f"the LR images have {bands} bands but the model was trained on {lr_band_count(cfg.data)}; "
                        "select the training bands first")
    scale = cfg.data.scale
    fused = args.tiles == "fused" and hasattr(pipe, "sample_scene")  # a regression baseline has no sampler
    if args.tiles == "fused" and not fused:
        print(f"{pipe.stage} is one forward pass, no sampler to fuse tiles in: its tiles are blended "
              "(--tiles independent)", file=sys.stderr, flush=True)
    align = pipe.tile_align if fused else 1
    tile, overlap, tiles = tile_plan(height, width, cfg, align)
    branches = len(rasters)
    per_batch = max(1, sampler.chunk_size // branches)  # one batch of tiles = one UNet call of chunk_size rows
    nfe = sampler.network_evaluations  # guidance: a second, unconditional call per step
    print(describe_sampler(sampler, sampler_settings), file=sys.stderr, flush=True)
    mode = "fused inside the sampler at every step" if fused else "sampled independently, then blended"
    print(f"{branches} LR images of {height}×{width} px -> {scale * height}×{scale * width} px: {tiles} tiles of "
          f"{tile} px in batches of {per_batch}; {tiles} tiles × NFE {nfe} = {tiles * nfe} UNet calls "
          f"(each over {branches} LR branches); tiles {mode}", file=sys.stderr, flush=True)
    if tiles > 1:
        print(f"tile grid: score this output's seams with `satdiffmoe score --tile-grid {tile} {overlap} {scale}"
              f"{f' {align}' if align != 1 else ''}`", file=sys.stderr, flush=True)
    lr = torch.from_numpy(np.stack([r.pixels for r in rasters]))
    from ..data.radiometry import match_output, read_manifest, to_units, training_report

    for line in training_report(cfg.data.root, (lr.numpy() + 1) / 2, masks):  # what it learnt; far-from-it warning
        print(line, file=sys.stderr, flush=True)
    recorded = "record" in ((read_manifest(cfg.data.root)[0] or {}).get("normalisation") or {})
    print(describe_mapping(args, mapping, rasters[0].value_max, recorded), file=sys.stderr, flush=True)
    with torch.no_grad():
        if fused:
            image, uncertainty = sample_scene(pipe, sampler, lr, torch.from_numpy(masks), dts, overlap, args.seed)
        else:
            image, uncertainty = sample_tiled(tile_sampler(pipe, sampler, dts, args.seed), lr,
                                              torch.from_numpy(masks), tile=tile, overlap=overlap, scale=scale,
                                              batch_size=per_batch, progress=True)
    # colours are matched to the LR bands that observe the output's (multispectral LR: data.lr_rgb)
    rgb = lr if cfg.data.get("lr_rgb") is None else lr[:, list(cfg.data.lr_rgb)]
    matched = match_output(image.numpy(), rgb.numpy(), masks, args.match_lr)  # in [-1, 1], as the model sees
    if mapping is not None:  # the HR's units through the manifest's inverse, else the LRs' (--value-max)
        values, clipped = to_units(matched, mapping[1])
        if clipped:
            log.warning("%d of %d output values (%.1f %%) lie outside the HR interval %s the training records held "
                        "(after --match-lr %s); they are clipped to it", clipped, matched.size,
                        100 * clipped / matched.size, mapping[1].summary(), args.match_lr)
    with keeping(f"after {args.out} was written in full"):
        # every file is written whole to a partial name, then all are renamed: an SR image never comes
        # without its map, also when the map's write fails (full disk) or a signal lands (held)
        with held(), output_set() as together:
            if mapping is None:
                write_raster(args.out, matched, like=rasters[0], scale=scale, value_max=rasters[0].value_max,
                             together=together)
            else:
                write_values(args.out, values, like=rasters[0], scale=scale, together=together)
            if args.uncertainty:
                # the sampler's spread is in scaled latent units; halved as a [-1, 1] std would be (README, "Uncertainty")
                write_raster(args.uncertainty, (uncertainty / 2).numpy(), like=rasters[0], scale=scale,
                             as_float=True, together=together)
        print(args.out)
    return 0
