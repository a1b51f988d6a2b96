"""`portable_config`: a diffusers config as plain, loadable Python types.

Checkpoints store every network's constructor config in their hyper-parameters and are read back
with `torch.load(weights_only=True)`, which refuses anything but plain types. diffusers configs are
FrozenDicts, keep tuples, and carry bookkeeping keys (`_class_name`, `_diffusers_version`, and
`_name_or_path`, a `Path` for a model loaded from a local folder): drop the bookkeeping, plain the rest.
"""

from __future__ import annotations

import os
from typing import Any


def portable_config(config: Any) -> Any:
    if isinstance(config, dict):
        return {str(k): portable_config(v) for k, v in config.items() if not str(k).startswith("_")}
    if isinstance(config, (list, tuple)):
        return [portable_config(v) for v in config]
    if isinstance(config, os.PathLike):
        return os.fspath(config)
    return config
