"""Loading trained tasks for evaluation, sampling and as the start of a later stage.

    task = load_task("runs/quickstart/ae", expect_stage="autoencoder")   # run folder -> best, else last
    task = load_task("runs/.../checkpoints/last.ckpt")

Checkpoints are read with `weights_only=True` (no arbitrary code runs); the stored hyper-parameters
({"stage", "config", "networks"}) rebuild the networks, then the weights load strictly.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import torch

from ..errors import UserError, user_errors

log = logging.getLogger(__name__)


def _read(path: Path) -> dict:
    """Memory-mapped: what is never touched (a full checkpoint's optimizer moments and EMA copy, 10 of
    its 14 GB at SD 2.1 width) is never read. torch's legacy (non-zip) format cannot be mapped."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # EOFError of an empty file has no message
        raise UserError(f"cannot read checkpoint {path}: {reason}") from None


def resolve_checkpoint(path: str | Path) -> Path:
    """A .ckpt file as given; a run folder (or its checkpoints/) -> the best top-k checkpoint, else last.ckpt."""
    path = Path(path)
    if path.is_file():
        return path
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    last = folder / "last.ckpt"
    if not last.is_file():
        raise UserError(f"no checkpoint at {path} (expected a .ckpt file or a run folder with checkpoints/last.ckpt)")
    for key, state in _read(last).get("callbacks", {}).items():
        # the top-k callback's best (LastCheckpoint's state is keyed "LastCheckpoint{...}")
        if key.startswith("ModelCheckpoint") and state.get("best_model_path"):
            best = folder / Path(state["best_model_path"]).name  # the run folder may have moved
            if best.is_file():
                return best
    return last


def load_task(path: str | Path, expect_stage: str | None = None, config: dict | None = None):
    """The task stored at `path`, on CPU in eval mode.

    `config` (optional) rebuilds the networks from that config instead of the stored one, for checking
    that a checkpoint fits a given experiment; a mismatch is a UserError naming both shapes.
    """
    from . import task_class

    path = resolve_checkpoint(path)
    checkpoint = _read(path)
    hparams = checkpoint.get("hyper_parameters") or {}
    stage = hparams.get("stage")
    if stage is None or "config" not in hparams:
        raise UserError(f"{path} is not a satdiffmoe checkpoint (no stage/config in its hyper_parameters)")
    if expect_stage is not None and stage != expect_stage:
        raise UserError(f"{path} is a '{stage}' checkpoint but a '{expect_stage}' checkpoint is needed here; "
                        f"point to the {expect_stage} stage's run folder or .ckpt")
    cls = task_class(stage)
    with user_errors():  # a model's ValueError (e.g. a config it cannot build) as one line
        task = cls(hparams["config"], networks=hparams["networks"]) if config is None else cls(config, networks=None)
    _load_weights(task, checkpoint["state_dict"], path)
    task.on_load_checkpoint(checkpoint)
    log.info("loaded %s task from %s", stage, path)
    return task.eval()


def check_fits(path: str | Path, task) -> None:
    """Fail with one line before `Trainer.fit(ckpt_path=...)` would fail with a traceback mid-restore:
    an unreadable or unsafe file, a checkpoint of another stage, or one of another model size."""
    path = Path(path)
    checkpoint = _read(path)
    stage = (checkpoint.get("hyper_parameters") or {}).get("stage")
    if stage is None:
        raise UserError(f"{path} is not a satdiffmoe checkpoint (no stage in its hyper_parameters)")
    if stage != task.stage:
        raise UserError(f"{path} is a '{stage}' checkpoint but this run trains stage '{task.stage}'; "
                        f"continue from a {task.stage} checkpoint or set stage={stage}")
    _load_weights(task, checkpoint.get("state_dict", {}), path)


def _load_weights(task: torch.nn.Module, state: dict, path: Path) -> None:
    expected = task.state_dict()
    for name, value in state.items():
        if name in expected and expected[name].shape != value.shape:
            raise UserError(f"{path} does not fit this model: {name} has shape {tuple(value.shape)} in the checkpoint "
                            f"but {tuple(expected[name].shape)} in the model; use the config the checkpoint was "
                            "trained with (model.* sizes must match)")
    missing, unexpected = task.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise UserError(f"{path} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                        "(a checkpoint of another architecture?)")


def load_sampler(path: str | Path, need_lr: bool = False):
    """What `evaluate`, `sample` and sweeps run, and the one place that decides what can sample:

    * an exported pipeline folder (`satdiffmoe export`) -> its pipeline;
    * a diffusion stage's checkpoint or run folder -> the task's pipeline (pipelines/);
    * a regression baseline's -> the task itself (one forward pass; same `sample(batch, ...)` call).

    `need_lr` (the `sample` command): the model must turn LR images into an HR image, which the
    unconditional prior and the regression baselines' batch interface do not offer here.
    """
    from ..pipelines.registry import PIPELINES, is_pipeline_folder, load_pipeline

    lr_stages = sorted(stage for stage, cls in PIPELINES.items() if cls.uses_lr)
    if is_pipeline_folder(path):
        try:
            method = load_pipeline(path)
        except (ValueError, FileNotFoundError, OSError) as exc:
            raise UserError(f"cannot load the pipeline folder {path}: {exc}") from None
    else:
        task = load_task(path)
        method = getattr(task, "pipeline", None) or (task if hasattr(task, "sample") else None)
        if method is None:
            raise UserError(f"{path} is a '{task.stage}' checkpoint, which cannot sample; use a diffusion stage "
                            f"({', '.join(sorted(PIPELINES))}) or a regression baseline (highresnet, rams, srcnn)")
    if need_lr and not getattr(method, "uses_lr", False):
        raise UserError(f"{path} is a '{method.stage}' model; sample needs one of {', '.join(lr_stages)}")
    return method
