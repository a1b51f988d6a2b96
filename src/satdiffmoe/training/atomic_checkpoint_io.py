"""Checkpoint files that are either complete or absent, whatever kills the process.

Lightning's `TorchCheckpointIO` writes through an fsspec transaction: a temp file in $TMPDIR, then
`shutil.move`. When $TMPDIR is on another filesystem than the run folder (tmpfs /tmp, NFS or Lustre
run folders: the usual cluster set-up) that move is a copy into the final name, so a SIGKILL mid-copy
leaves a truncated `last.ckpt` (6 of 24 kills in tests/reliability/test_checkpoint_atomicity.py), and
every kill mid-write leaks a checkpoint-sized file in $TMPDIR. Here the temp file sits beside its
target and `os.replace` swaps it in, which is atomic within one filesystem.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from ..errors import UserError
from ..interrupts import held


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` with write-beside-then-rename saves for local paths (remote URLs unchanged)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # object stores: fsspec's transaction is the atomic primitive there
            return super().save_checkpoint(checkpoint, path, storage_options)
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint does not take storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        # One fixed temp name per target: a leftover from a killed save is overwritten by the next one.
        partial = target.with_name(target.name + ".partial")
        try:
            # held: a Ctrl-C / SIGTERM during the write takes effect once the checkpoint is complete
            # (raised inside torch.save it surfaced as a bogus "unexpected pos" write error, exit 2)
            with held(), open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())  # the rename must never become visible before the data
                handle.close()
                os.replace(partial, target)
        except (OSError, RuntimeError) as exc:  # torch.save reports a failed write as RuntimeError
            partial.unlink(missing_ok=True)
            kept = f"the previous {target.name} is kept" if target.is_file() else f"no {target.name} was written"
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(f"cannot write checkpoint {target} ({reason}); {kept}. Free some disk space, then "
                            "continue with run_id=<this run> resume=true") from None
