"""A content-addressed cache of tensors computed from fixed inputs by fixed networks.

    key = cache.key("inception-v3-tf", weights_sha256, images_uint8)     # hash of everything it depends on
    features = cache.load("inception", key)                              # None on a miss
    cache.save("inception", key, features)

An entry's name is the hash of everything its value is computed from (the network's weights, the input
bytes), so an entry can be missing but never stale: nothing is ever invalidated. Entries are written
to a temporary file and renamed into place, so a reader sees a whole file or none; an unreadable
entry counts as a miss and is rewritten. The folder is `SATDIFFMOE_CACHE`, else
`$XDG_CACHE_HOME/satdiffmoe`, else `~/.cache/satdiffmoe`; `SATDIFFMOE_CACHE=off` turns caching off.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from pathlib import Path

import torch

log = logging.getLogger(__name__)
ENV = "SATDIFFMOE_CACHE"


def folder() -> Path | None:
    """The cache folder, or None when caching is off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() == "off":
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "satdiffmoe"


def key(*parts: str | bytes | torch.Tensor) -> str:
    """sha256 over the parts in order (a tensor by its dtype, shape and bytes)."""
    digest = hashlib.sha256()
    for part in parts:
        if torch.is_tensor(part):
            part = part.detach().cpu().contiguous()
            digest.update(f"{part.dtype}{tuple(part.shape)}".encode())
            digest.update(part.numpy().tobytes() if part.dtype != torch.bfloat16 else part.view(torch.int16).numpy())
        else:
            digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()


def _path(kind: str, name: str) -> Path | None:
    root = folder()
    return None if root is None else root / kind / f"{name}.pt"


def load(kind: str, name: str) -> torch.Tensor | dict | None:
    path = _path(kind, name)
    if path is None or not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: recompute it
        log.warning("cache entry %s is unreadable (%s); recomputing it", path, exc)
        return None


def save(kind: str, name: str, value: torch.Tensor | dict) -> None:
    """Write atomically; a cache that cannot be written (read-only home, full disk) only costs speed."""
    path = _path(kind, name)
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(value, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write the cache entry %s (%s); continuing without it", path, exc)
        with contextlib.suppress(OSError):  # when its folder could not be made there is no file
            tmp.unlink(missing_ok=True)
