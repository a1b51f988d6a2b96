"""The `satdiffmoe` sub-commands, one module each (as diffusers' `diffusers/commands/`).

    prepare.py      `satdiffmoe prepare`: delegates to data_prep.cli
    train.py        `satdiffmoe train`: config -> run folder -> Lightning fit
    evaluate.py     `satdiffmoe evaluate`: a checkpoint on the test split -> eval/<name>.json
    sample.py       `satdiffmoe sample`: a user's own LR stack -> SR image
    score.py        `satdiffmoe score`: the metrics on anybody's images
    sweep.py        `satdiffmoe sweep`: run or resume an Optuna study
    report.py       `satdiffmoe report`: tables and figures from runs, studies and evals
    quickstart.py   `satdiffmoe quickstart`: every stage end to end on synthetic data
    export.py       `satdiffmoe export`: a trained diffusion stage -> a diffusers-style pipeline folder

Each module has `register(subparsers)`, which adds its sub-parser (arguments and help), and
`run(args) -> int`. Modules import only the standard library at the top; torch, Lightning and the
library packages are imported inside `run`, so `satdiffmoe --help` stays instant. Commands may
import any library package; no library package imports from here. A new command is one module here
plus its name in `COMMANDS`.
"""

from __future__ import annotations

import argparse

# in the order `satdiffmoe --help` lists them
COMMANDS = ("prepare", "train", "evaluate", "sample", "score", "sweep", "report", "quickstart", "export")


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG [key=value ...], shared by the commands that run an experiment config."""
    parser.add_argument("config", help="experiment YAML (experiments/*.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="dotted config overrides, e.g. train.lr=1e-4")


def add_command(subparsers, name: str, help_text: str) -> argparse.ArgumentParser:
    return subparsers.add_parser(name, help=help_text, description=help_text)
