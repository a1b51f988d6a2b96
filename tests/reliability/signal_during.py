"""Run `satdiffmoe ARGS` with a signal sent to itself right after the first call of MODULE.FUNC returns.

    python signal_during.py safetensors.torch.save_file SIGTERM export RUN --out DIR

For steps too short to hit from outside (an export's file writes): the signal lands at a known
point, inside the step, every time.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

from satdiffmoe.cli import main


def signal_after_first_call(target: str, signum: int) -> None:
    module_name, name = target.rsplit(".", 1)
    module = importlib.import_module(module_name)
    original = getattr(module, name)
    sent = []

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signum)  # Python runs the handler at the next bytecode, still in this step
        return result

    setattr(module, name, wrapper)


if __name__ == "__main__":
    signal_after_first_call(sys.argv[1], getattr(signal, sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
