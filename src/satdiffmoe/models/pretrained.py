"""Loading a local diffusers model folder (`save_pretrained` output) with one clear error on failure."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from diffusers import ModelMixin

from ..errors import UserError

Model = TypeVar("Model", bound=ModelMixin)


def load_local_pretrained(model_class: type[Model], folder: str | Path, config_key: str, hint: str) -> Model:
    """`model_class.from_pretrained(folder)` without network access; `config_key` names the setting."""
    folder = Path(folder)
    name = model_class.__name__
    if not (folder / "config.json").is_file():
        raise UserError(f"{config_key}={folder} is not a diffusers {name} folder (no config.json); {hint}")
    try:  # diffusers reads .bin weights with weights_only=True and refuses pickled code
        return model_class.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UserError(f"cannot load {config_key}={folder}: {str(exc).splitlines()[0]}") from None
