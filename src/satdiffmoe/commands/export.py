"""`satdiffmoe export RUN_OR_CKPT --out FOLDER`: a trained diffusion stage as a pipeline folder.

The folder is diffusers' own layout (`DiffusionPipeline.save_pretrained`): model_index.json (the
pipeline class, its sampler defaults and the training config), vae/, denoiser/ and scheduler/, with
safetensors weights. Loading it needs neither Lightning nor this project's checkpoints:

    from satdiffmoe.pipelines import load_pipeline
    pipe = load_pipeline("exported/satdiffmoe")

`sample`, `evaluate` and evaluate sweeps accept the folder wherever they accept a checkpoint. The
folder also ships satdiffmoe_pipeline.py, the custom-pipeline module `model_index.json` names, so
`diffusers.DiffusionPipeline.from_pretrained(FOLDER, trust_remote_code=True)` opens it too.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import UserError
from ..interrupts import held, keeping
from . import add_command

log = logging.getLogger(__name__)

HELP = "write a trained SatDiffMoE / ControlNet / DiffusionSat / prior as a diffusers-style pipeline folder"


def register(subparsers) -> None:
    p = add_command(subparsers, "export", HELP)
    p.add_argument("ckpt", metavar="RUN_OR_CKPT", help="a checkpoint (.ckpt) or a run folder (uses its best checkpoint)")
    p.add_argument("--out", required=True, help="the pipeline folder to write (must not exist yet, or be empty)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing pipeline folder at --out")


def check_output(out: Path, overwrite: bool) -> None:
    """Never write over anything but an earlier export (and that only with --overwrite)."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return
    if not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder name")
    if not (out / "model_index.json").is_file():
        raise UserError(f"--out {out} exists and is not a pipeline folder; choose a new folder name")
    if not overwrite:
        raise UserError(f"--out {out} already holds a pipeline; pass --overwrite to replace it, or choose another folder")


def run(args) -> int:
    out = Path(args.out)
    check_output(out, args.overwrite)
    with keeping(f"nothing written; {out} is untouched" if out.exists() else f"nothing written (no {out})"):
        return _export(args, out)


def _export(args, out: Path) -> int:
    from ..training.checkpoints import load_task, resolve_checkpoint

    path = resolve_checkpoint(args.ckpt)
    task = load_task(path)
    pipe = getattr(task, "pipeline", None)
    if pipe is None:
        raise UserError(f"{path} is a '{task.stage}' checkpoint; export writes diffusion stages "
                        "(prior, satdiffmoe, controlnet, diffusionsat)")
    from safetensors import SafetensorError

    from ..models.trainable import merge_lora

    merge_lora(pipe.denoiser)  # LoRA adapters folded into the weights: the folder holds plain diffusers models
    # written next to the target and renamed: an interrupted export never leaves half a folder at --out
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        pipe.save_pretrained(str(partial), safe_serialization=True)
        # the old export goes only once the new one takes its place
        with keeping(f"after {out} was written in full"), held():
            if out.exists():
                shutil.rmtree(out)
            os.replace(partial, out)
    except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as its own error
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc).splitlines()[0]
        kept = f"the export already in {out} is kept" if out.exists() else "nothing was written"
        raise UserError(f"cannot write {out}: {reason}; {kept}; free some space and export again") from None
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    with keeping(f"after {out} was written in full"):
        log.info("exported the %s pipeline of %s", task.stage, path)
        print(out)
    return 0
