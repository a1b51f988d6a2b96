"""Deterministic train/val/test assignment for sources without an official split.

A scene's split depends only on its id (a SHA-1 of it), never on the order files are listed in or on
how many scenes there are, so adding scenes later leaves every existing assignment unchanged.
"""

from __future__ import annotations

import hashlib

from satdiffmoe.errors import UserError

SPLIT_NAMES = ("train", "val", "test")


def hash_split(scene_id: str, val_frac: float, test_frac: float) -> str:
    """'test' for the first `test_frac` of the hash range, 'val' for the next `val_frac`, else 'train'."""
    if val_frac < 0 or test_frac < 0 or val_frac + test_frac >= 1:
        raise UserError(f"split fractions: --val-frac {val_frac} and --test-frac {test_frac} must be >= 0 "
                        "and sum to less than 1")
    digest = hashlib.sha1(scene_id.encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2.0 ** 64
    if position < test_frac:
        return "test"
    if position < test_frac + val_frac:
        return "val"
    return "train"


def normalise_split(value: object, where: str) -> str:
    """Map the split spellings found in raw metadata (Train, validation, test_gt) to train/val/test."""
    text = str(value).strip().lower()
    aliases = {"training": "train", "valid": "val", "validation": "val", "test_gt": "test", "testing": "test"}
    text = aliases.get(text, text)
    if text not in SPLIT_NAMES:
        raise UserError(f"no split: {where} names split {value!r}; use one of train, val, test")
    return text
