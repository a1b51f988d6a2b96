"""Run `satdiffmoe ARGS`; the first call of TARGET writes MARKER and then blocks until the process is killed.

    python pause_during.py satdiffmoe.evaluation.evaluator.Evaluator.evaluate MARKER sweep FILE ...

A fault-injection point that does not depend on timing: once MARKER exists the process is inside
TARGET (e.g. mid-trial, its trial RUNNING with heartbeats going), however fast or loaded the machine.
"""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

from signal_during import owner_of

from satdiffmoe.cli import main


def pause_in_first_call(target: str, marker: Path) -> None:
    owner, name = owner_of(target)
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        marker.write_text("paused")
        while True:
            time.sleep(1)

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    pause_in_first_call(sys.argv[1], Path(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
