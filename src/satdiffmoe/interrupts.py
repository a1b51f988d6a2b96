"""Ctrl-C and SIGTERM: one way for every command to stop, say what it kept, and exit 128 + the signal.

`cli.main` runs every command inside `handling()`: SIGTERM then raises KeyboardInterrupt exactly as Ctrl-C does, so the
one `except KeyboardInterrupt` path that already exists everywhere (Lightning's graceful shutdown,
Optuna failing the running trial, our `finally` blocks removing temp files, torch's DataLoader
shutting its workers) handles both. A command wraps its long part in

    with keeping("no results written; the previous eval/*.json are untouched"):
        ...

and the CLI prints `interrupted: <that>` as its one line and exits `exit_status()` (130 after
SIGINT, 143 after SIGTERM, as shells report them). `held()` defers both signals over a few renames
that must all happen or none (an evaluation's set of JSONs, a swapped export folder, a shard set
and its manifest).
"""

from __future__ import annotations

import ctypes
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_received: int | None = None  # the last signal that interrupted this process
_holding = 0  # depth of held() blocks
_pending: int | None = None  # a signal that arrived inside held(), raised when the block ends
_handling = 0  # depth of handling() blocks


class Interrupted(KeyboardInterrupt):
    """An interruption with the one line the CLI prints (`interrupted: ...`)."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = line


def _raise(signum: int, frame) -> None:
    global _received, _pending
    _received = signum
    if _holding:
        _pending = signum
        return
    raise KeyboardInterrupt


@contextmanager
def handling() -> Iterator[None]:
    """Inside the block SIGINT and SIGTERM raise KeyboardInterrupt; the previous handlers come back
    after it. Main thread only (elsewhere a no-op); an ignored SIGINT, as a background job of a
    non-interactive shell has, stays ignored."""
    global _received, _pending, _handling
    _received = _pending = None
    _handling += 1
    try:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
        for signum, handler in previous.items():
            if handler is not signal.SIG_IGN:
                signal.signal(signum, _raise)
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
    finally:
        _handling -= 1


def handled() -> bool:
    """Whether a `handling()` block is active (a command run by another command, as quickstart does,
    leaves the interruption to the outer one). Kept here, not in cli.py: `python -m satdiffmoe.cli`
    loads cli.py twice (as __main__ and as satdiffmoe.cli), this module once."""
    return _handling > 0


def received() -> int | None:
    return _received


def exit_status() -> int:
    """128 + the signal that interrupted the process (a Ctrl-C outside `handling()` counts as SIGINT).

    Also clears CPython's "unhandled KeyboardInterrupt" flag: a KeyboardInterrupt that passed through
    code run by PyRun_String (pybind11's exec, e.g. while torch is being imported) sets it even when
    the interruption is then handled, and `python -m satdiffmoe.cli` would then kill itself with
    SIGINT at exit (status -2 instead of 130 / 143; seen when Ctrl-C landed on a command's imports).
    """
    try:
        ctypes.c_int.in_dll(ctypes.pythonapi, "_Py_UnhandledKeyboardInterrupt").value = 0
    except (AttributeError, ValueError):  # another interpreter, or a CPython without the flag
        pass
    return 128 + int(_received or signal.SIGINT)


@contextmanager
def keeping(kept: str | Callable[[], str]) -> Iterator[None]:
    """Turn an interruption inside the block into `Interrupted("interrupted: <kept>")`; `kept` may be a
    function, called then, for what is known only at that time (trials done, the step reached).
    An `Interrupted` from an inner block keeps its own, more precise, line."""
    try:
        yield
    except Interrupted:
        raise
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {kept() if callable(kept) else kept}") from None


@contextmanager
def held() -> Iterator[None]:
    """Run the block whole: SIGINT / SIGTERM arriving inside it take effect when it ends."""
    global _holding, _pending
    _holding += 1
    try:
        yield
    except BaseException:
        _holding -= 1
        _pending = None if not _holding else _pending  # the block's own error is what the user sees
        raise
    _holding -= 1
    if not _holding and _pending is not None:
        _pending = None
        raise KeyboardInterrupt


@contextmanager
def released() -> Iterator[None]:
    """Inside `held()`, let the signals through again for this block (one that arrived meanwhile
    raises at once): e.g. held over Optuna's bookkeeping around a trial, released inside the trial."""
    global _holding, _pending
    saved, _holding = _holding, 0
    try:
        if _pending is not None:
            _pending = None
            raise KeyboardInterrupt
        yield
    finally:
        _holding = saved
