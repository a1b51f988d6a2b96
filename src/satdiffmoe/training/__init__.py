"""LightningModules, one per `stage:`, on a shared base; plus callbacks, loggers, checkpoints and the
Trainer a config asks for (trainer.py; the `satdiffmoe train` command is commands/train.py).

`TASKS` is the one registry from stage name to task class ("module:Class", imported on first use so
`satdiffmoe --help` stays instant). A new stage adds one line here.
"""

from __future__ import annotations

import importlib

TASKS = {
    "autoencoder": "satdiffmoe.training.autoencoder:AutoencoderTask",
    "prior": "satdiffmoe.training.prior:PriorTask",
    "satdiffmoe": "satdiffmoe.training.satdiffmoe:SatDiffMoETask",
    "controlnet": "satdiffmoe.training.controlnet:ControlNetTask",
    "diffusionsat": "satdiffmoe.training.diffusionsat:DiffusionSatTask",
    "highresnet": "satdiffmoe.training.highresnet:HighResNetTask",
    "rams": "satdiffmoe.training.rams:RAMSTask",
    "srcnn": "satdiffmoe.training.srcnn:SRCNNTask",
}


def task_class(stage: str):
    """The LightningModule class that trains `stage`."""
    from ..errors import UserError

    if stage not in TASKS:
        raise UserError(f"no task for stage '{stage}'; known stages: {', '.join(TASKS)}")
    module_name, class_name = TASKS[stage].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UserError(f"stage '{stage}' is not built yet in this version (missing {module_name})") from None
        raise
    return getattr(module, class_name)
