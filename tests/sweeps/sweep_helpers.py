"""Helpers the sweep tests import (pytest puts this folder on sys.path; the name is unique in tests/)."""

import re
from pathlib import Path
from typing import List


def wandb_run_names(sweep_dir: Path) -> List[str]:
    """Display names of the W&B offline runs in a sweep folder, read from their .wandb transaction logs."""
    names = []
    for log_file in sorted((sweep_dir / "wandb").glob("offline-run-*/run-*.wandb")):
        found = re.findall(rb"trial-\d+|summary", log_file.read_bytes())
        names.append(found[0].decode() if found else "?")
    return names
