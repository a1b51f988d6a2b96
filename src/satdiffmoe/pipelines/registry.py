"""Which pipeline serves which stage, and opening an exported pipeline folder."""

from __future__ import annotations

import json
from pathlib import Path

from .base import LatentSRPipeline
from .controlnet import ControlNetPipeline
from .diffusionsat import DiffusionSatPipeline
from .satdiffmoe import PriorPipeline, SatDiffMoEPipeline

PIPELINES: dict[str, type[LatentSRPipeline]] = {
    cls.stage: cls for cls in (PriorPipeline, SatDiffMoEPipeline, ControlNetPipeline, DiffusionSatPipeline)
}
_BY_CLASS = {cls.__name__: cls for cls in PIPELINES.values()}


def is_pipeline_folder(path: str | Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def load_pipeline(folder: str | Path, device: str | None = None) -> LatentSRPipeline:
    """An exported pipeline folder (model_index.json, vae/, denoiser/, scheduler/), local files only."""
    index = Path(folder) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{folder} is not a pipeline folder (no model_index.json); "
                                "write one with `satdiffmoe export RUN_OR_CKPT --out FOLDER`")
    name = json.loads(index.read_text()).get("_class_name")
    if isinstance(name, list):  # [custom-pipeline module, class] (pipelines/base.py)
        name = name[-1]
    if name not in _BY_CLASS:
        raise ValueError(f"{folder} holds a {name!r} pipeline; this version reads {', '.join(sorted(_BY_CLASS))}")
    pipe = _BY_CLASS[name].from_pretrained(str(folder), local_files_only=True, low_cpu_mem_usage=False)
    return pipe.to(device) if device else pipe
