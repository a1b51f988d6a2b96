"""One exception type for everything a user can fix.

The CLI prints a `UserError` as a single line (no traceback unless `--debug`) and exits non-zero.
Raise it wherever bad input is detected, with a message that names the problem *and* the fix.
"""


class UserError(Exception):
    """A problem with the user's input (config, data, paths, checkpoints) rather than a bug."""

    exit_code = 2
