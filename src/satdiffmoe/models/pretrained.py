"""Loading a local diffusers model folder (`save_pretrained` output) with one clear error on failure.

Errors are FileNotFoundError (no config.json) or ValueError (unreadable); the code that builds a task
shows them as one line (`errors.user_errors`)."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from diffusers import ModelMixin

Model = TypeVar("Model", bound=ModelMixin)


def load_local_pretrained(model_class: type[Model], folder: str | Path, config_key: str, hint: str) -> Model:
    """`model_class.from_pretrained(folder)` without network access; `config_key` names the setting."""
    folder = Path(folder)
    name = model_class.__name__
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"{config_key}={folder} is not a diffusers {name} folder (no config.json); {hint}")
    try:  # diffusers reads .bin weights with weights_only=True and refuses pickled code
        return model_class.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ValueError(f"cannot load {config_key}={folder}: {str(exc).splitlines()[0]}") from None
