"""One exception type for everything a user can fix, and where library errors become one.

The CLI prints a `UserError` as a single line (no traceback unless `--debug`) and exits non-zero.
Raise it wherever bad input is detected, with a message that names the problem *and* the fix.

The networks in `models/` know nothing about the CLI: they raise `ValueError` for a bad value (or
`FileNotFoundError` for a missing file) with a message that names the config key. Code that builds
models from a user's config converts them at that boundary with `user_errors()`, so the user still
sees one line:

    with user_errors():
        task = task_class(cfg.stage)(cfg)

(`training.trainer.build_task` does this for `train` and training sweeps; `--debug` shows the
original traceback, chained under the UserError.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A problem with the user's input (config, data, paths, checkpoints) rather than a bug."""

    exit_code = 2


@contextmanager
def user_errors() -> Iterator[None]:
    """Re-raise a ValueError or FileNotFoundError from inside the block as a UserError with the same
    message; a UserError (even one that is also a ValueError) passes through unchanged."""
    try:
        yield
    except UserError:
        raise
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc)) from exc
