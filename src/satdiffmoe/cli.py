"""The `satdiffmoe` command: one sub-command per pipeline stage.

    satdiffmoe prepare SOURCE --out DIR [...]            data -> WebDataset shards + manifest.json
    satdiffmoe train CONFIG [key=value ...]              train the stage named by `stage:`
    satdiffmoe evaluate CONFIG ckpt=... [key=value ...]  sample the test split, write metrics
    satdiffmoe sample --ckpt C --lr a.tif b.tif --dt -40 3 --out sr.tif
    satdiffmoe score --pred SR --ref HR [--lr LR ...]     score any images with the framework's metrics
    satdiffmoe sweep sweeps/X.yaml [--n-trials N] [--storage URL] [--workers K]
    satdiffmoe report --runs ... --study ... --evals ... --out DIR
    satdiffmoe quickstart                                synthetic data -> every stage -> report

Each sub-command is a module in `satdiffmoe/commands/` that registers its own arguments and imports
its heavy dependencies only when it runs, so `--help` is instant. A `UserError` prints as one line and
exits 2; `--debug` shows the traceback instead. Ctrl-C and SIGTERM print one line `interrupted: <what was
kept>` and exit 130 / 143 (interrupts.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import sys

from . import commands, interrupts, threads
from .errors import UserError

# sub-command name -> its module in satdiffmoe/commands/ (`register(subparsers)`, `run(args) -> int`)
COMMANDS = {name: importlib.import_module(f"{commands.__name__}.{name}") for name in commands.COMMANDS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satdiffmoe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug-level logging")
    parser.add_argument("--threads", metavar="N|auto", default=None,
                        help="torch threads per process (default auto: the CPUs other processes leave free; "
                             "also SATDIFFMOE_THREADS)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        module.register(sub)
    return parser


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
    if interrupts.handled():  # `quickstart` runs the other commands through main(): the outermost reports
        return _main(argv)
    try:
        with interrupts.handling():
            return _main(argv)
    except KeyboardInterrupt as exc:
        line = exc.line if isinstance(exc, interrupts.Interrupted) else "interrupted"
    # Out of the except block the interrupted frames are released: their progress bars close (and
    # print) now, so that the line below is the last one on the terminal.
    gc.collect()
    print(line, file=sys.stderr, flush=True)
    return interrupts.exit_status()


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to relaunch the same command (DDP sweeps)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        if args.threads is not None:  # an environment variable, so that sweep workers and DDP ranks inherit it
            os.environ[threads.ENV] = args.threads
        threads.apply()
        result = COMMANDS[args.command].run(args)
        return int(result or 0)
    except UserError as exc:
        if args.debug:
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
