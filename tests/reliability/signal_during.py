"""Run `satdiffmoe ARGS` with a signal sent to itself right after the first call of TARGET returns.

    python signal_during.py safetensors.torch.save_file SIGTERM export RUN --out DIR
    python signal_during.py optuna.storages._rdb.storage.RDBStorage._set_trial_attr_without_commit \
        SIGTERM --arg worker sweep FILE ...     # the first call with "worker" among its arguments

TARGET is a module's function or a class's method. For steps too short to hit from outside (an
export's file writes, one database write): the signal lands at a known point, inside the step,
every time.
"""

from __future__ import annotations

import functools
import importlib
import os
import signal
import sys

from satdiffmoe.cli import main


def owner_of(target: str):
    """The module or class holding TARGET's last name (the longest importable prefix is the module)."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(target)


def signal_after_first_call(target: str, signum: int, arg: str | None = None) -> None:
    owner, name = owner_of(target)
    original = getattr(owner, name)
    sent = []

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        result = original(*args, **kwargs)
        if not sent and (arg is None or arg in args or arg in kwargs.values()):
            sent.append(True)
            os.kill(os.getpid(), signum)  # Python runs the handler at the next bytecode, still in this step
        return result

    setattr(owner, name, wrapper)


if __name__ == "__main__":
    target, signame, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
    arg = None
    if argv[:1] == ["--arg"]:
        arg, argv = argv[1], argv[2:]
    signal_after_first_call(target, getattr(signal, signame), arg)
    sys.exit(main(argv))
