"""Helpers the sweep tests import (pytest puts this folder on sys.path; the name is unique in tests/)."""

import re
from pathlib import Path

import yaml

TINY_EXPERIMENT = Path(__file__).with_name("tiny_experiment.yaml")


def sweep_file(folder: Path, tiny_model: dict, params=None, **fields) -> Path:
    """A sweep file on the tiny checkpoint: a 2x2 grid over fusion on/off and 1-2 LRs unless told otherwise."""
    spec = {
        "study": "tiny",
        "config": str(TINY_EXPERIMENT),
        "ckpt": str(tiny_model["ckpt"]),
        "base_overrides": [f"data.root={tiny_model['data']}"],
        "params": params or {"sampler.fusion_every": {"choices": [1, "off"]}, "data.num_lr": {"choices": [1, 2]}},
        "objectives": [{"metric": "psnr", "direction": "maximize"}],
        "sampler": {"name": "grid"},
        "heartbeat": {"interval": 1, "grace": 2},  # dead workers are noticed within ~3 s
    }
    spec.update(fields)
    path = Path(folder) / f"{spec['study']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def wandb_run_names(sweep_dir: Path) -> list[str]:
    """Display names of the W&B offline runs in a sweep folder, read from their .wandb transaction logs."""
    names = []
    for log_file in sorted((sweep_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        found = re.findall(rb"trial-\d+|summary", log_file.read_bytes())
        names.append(found[0].decode() if found else "?")
    return names
