"""`satdiffmoe prepare SOURCE [options]`: dispatch to the converter module of SOURCE.

A source is a module `data_prep/<name>.py` exposing

    add_arguments(parser)            its own options (the common ones below are already there)
    convert(args) -> dict            writes shards + manifest.json under args.out, returns the manifest

Adding a source = writing that module and adding its name to `SOURCES`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
from pathlib import Path
from types import ModuleType

from satdiffmoe.data.shard_writer import SPLITS
from satdiffmoe.errors import UserError
from satdiffmoe.interrupts import keeping

from .radiometry import DEFAULT_MAX_CLIPPED

log = logging.getLogger(__name__)

SOURCES = {
    "synthetic": "procedurally generated multi-temporal scenes (SynthSat, no download)",
    "worldstrat": "WorldStrat: Sentinel-2 revisits + SPOT HR",
    "fmow": "fMoW-Sentinel / fMoW-RGB pairs",
    "probav": "PROBA-V super-resolution challenge",
    "stack": "your own folder of co-registered LR/HR images",
}


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options every source understands."""
    parser.add_argument(
        "--out", required=True, help="output folder for <split>-NNNNNN.tar shards and manifest.json"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for generation and split assignment")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip unreadable or inconsistent inputs (counted in the manifest) instead of stopping",
    )
    parser.add_argument("--shard-size", type=int, default=128, help="scenes per .tar shard")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out, then delete the shards the new manifest does not list")
    parser.add_argument(
        "--max-clipped",
        type=float,
        default=DEFAULT_MAX_CLIPPED,
        help="largest fraction of a raster's values that may clip into [0, value_max] (or round to 0); "
        "a raster beyond it is an error, or a counted skip with --skip-bad",
    )


def load_source(name: str) -> ModuleType:
    if name not in SOURCES:
        raise UserError(f"unknown data source '{name}'; known sources: {', '.join(SOURCES)}")
    try:
        return importlib.import_module(f"data_prep.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"data_prep.{name}":
            raise UserError(
                f"data source '{name}' is not available in this version (data_prep/{name}.py is missing)"
            ) from None
        raise


def build_parser(name: str, module: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"satdiffmoe prepare {name}",
        description=SOURCES[name],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_common_arguments(parser)
    module.add_arguments(parser)
    return parser


def main(args: argparse.Namespace) -> int:
    """Entry point of `satdiffmoe prepare` (args.source, args.args = the source's argv)."""
    module = load_source(args.source)
    options = build_parser(args.source, module).parse_args(list(args.args or []))
    if options.shard_size < 1:
        raise UserError(f"--shard-size must be >= 1, got {options.shard_size}")
    out = Path(options.out)
    if out.is_dir() and any(out.iterdir()) and not options.overwrite:
        # new shards beside old ones: the reader's glob would mix both sets into one split
        raise UserError(f"--out {out} is not empty; choose an empty folder, or add --overwrite to replace "
                        "its shards (files the new manifest does not list are deleted)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose a folder name")
    earlier = out.is_dir() and any(out.iterdir())
    before = "its earlier shards and manifest.json are untouched" if earlier else "it holds no shards"
    with keeping(f"no shard or manifest written to {out}; {before}"):  # the writer deletes its partial shards
        manifest = module.convert(options)
    with keeping(f"after the shard set was written in full to {out} (see manifest.json)"):
        if options.overwrite:  # ShardSetWriter(remove_unlisted=True) did it with the renames; a second look is free
            remove_stale_shards(out, manifest)
        counts = manifest.get("counts", {})
        skipped = manifest.get("skipped", {}).get("count", 0)
        print(
            f"wrote {json.dumps(counts)} scenes to {options.out} (skipped {skipped}); "
            f"see {options.out}/manifest.json"
        )
    return 0


def remove_stale_shards(out: Path, manifest: dict) -> None:
    """Delete `<split>-*.tar` files in `out` that the manifest just written does not list."""
    listed = {name for names in manifest.get("shards", {}).values() for name in names}
    stale = [p for split in SPLITS for p in sorted(out.glob(f"{split}-*.tar")) if p.name not in listed]
    for path in stale:
        path.unlink()
    if stale:
        log.warning("--overwrite: deleted %d stale shard(s) from %s", len(stale), out)


def run(argv: list[str]) -> int:
    """Programmatic form: run(["synthetic", "--out", "d", "--num-scenes", "8"])."""
    return main(argparse.Namespace(source=argv[0], args=argv[1:]))
