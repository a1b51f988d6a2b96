"""`satdiffmoe prepare SOURCE --out DIR [...]`: a data source -> WebDataset shards + manifest.json.

The converters live outside the package, in `data_prep/` (one module per source, with its own
options); this command hands them the rest of the line.
"""

from __future__ import annotations

import argparse

from . import add_command

HELP = "convert a data source (synthetic, worldstrat, fmow, probav, stack) to shards"


def register(subparsers) -> None:
    p = add_command(subparsers, "prepare", HELP)
    p.add_argument("source", help="synthetic | worldstrat | fmow | probav | stack")
    p.add_argument("args", nargs=argparse.REMAINDER, help="source options; see `satdiffmoe prepare SOURCE --help`")


def run(args) -> int:
    from ..errors import UserError

    try:
        from data_prep.cli import main
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == "data_prep.cli" or "data_prep.cli".startswith(exc.name + ".")):
            raise UserError("`satdiffmoe prepare` is not built yet in this version (missing data_prep.cli)") from None
        raise
    return main(args)
