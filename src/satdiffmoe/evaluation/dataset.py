"""Which data an evaluation scored: the identity that goes into every eval JSON's `dataset`.

`report` compares these identities and refuses to put results of different datasets into one table
(a WorldStrat result next to SynthSat ones would read as the same benchmark). The manifest id is a
hash of the shard folder's manifest.json, so a re-converted dataset is a different dataset even
under the same path; without a manifest the id is None and the root alone identifies the data.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig


def dataset_identity(cfg: DictConfig, num_scenes: int) -> dict[str, Any]:
    root = Path(str(cfg.data.root)).expanduser()
    manifest = root / "manifest.json"
    identity: dict[str, Any] = {"root": str(root.resolve()), "split": "test", "num_scenes": int(num_scenes),
                                "test_subset": int(cfg.data.test_subset), "manifest_id": None, "source": None}
    if manifest.is_file():
        raw = manifest.read_bytes()
        identity["manifest_id"] = hashlib.sha1(raw).hexdigest()[:12]
        try:
            identity["source"] = json.loads(raw).get("source")
        except (ValueError, AttributeError):
            pass
    return identity


def dataset_label(identity: dict[str, Any] | None) -> str:
    """A short human name: `worldstrat (manifest 3f2a…, runs/data/worldstrat)`."""
    if not identity:
        return "an unrecorded dataset (an eval JSON written before datasets were recorded)"
    return f"{identity.get('source') or 'unknown source'} (manifest {identity.get('manifest_id')}, {identity.get('root')})"


def same_dataset(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal manifest ids when both have one, else equal roots; unrecorded datasets match only each other."""
    if not a or not b:
        return not a and not b
    if a.get("manifest_id") and b.get("manifest_id"):
        return a["manifest_id"] == b["manifest_id"]
    return a.get("root") == b.get("root")
