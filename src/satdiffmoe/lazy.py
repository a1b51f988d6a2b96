"""`lazy_exports`: a package's public names imported on first use (PEP 562).

Packages whose members import torch or each other (sampling, pipelines) stay cheap to import this
way: config loading can import `sampling.config` without pulling in the sampler.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module `__getattr__` resolving `name` from the submodule `exports[name]` (relative to `package`)."""
    def __getattr__(name: str):
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
