"""`satdiffmoe evaluate CONFIG ckpt=... [sampler.* data.num_lr=K eval.seeds=[0,1]]`.

Writes into the checkpoint's run folder (runs/x/y/checkpoints/best.ckpt -> runs/x/y/eval/), into a
new run folder under run_root when `run_root=DIR` is given (DIR/<name>/<id>/eval/), or into a new run
folder when the checkpoint does not sit in one. Every JSON records the dataset it scored (`dataset`:
manifest id, root, split, number of scenes) and the real NFE (`nfe`; `steps` is the sampler's):

    eval/<name>.json     summary: metrics (mean, std, ci95, n), resolved sampler, wall time, NFE
    eval/<name>.jsonl    one row per scene and seed
    eval/<name>.png      grid: LRs, bicubic, output, uncertainty, HR
    eval/<reference>_n<K>.json(l)   the same for bicubic_nearest, mean_bicubic and the autoencoder
                                    reconstruction (eval.references)
    eval/<name>_unc_constant.json(l), <name>_unc_lr_std.json(l)   free uncertainty maps scored against
                         this model's error (eval.references; evaluation/uncertainty_references.py)

<name> is eval.name, or readable settings plus the hash of every setting the numbers depend on
(evaluator.default_name); a JSON written with other settings is never replaced (check_not_replacing).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UserError
from ..interrupts import held, keeping
from . import add_command, add_config_arguments

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ..evaluation.evaluator import EvalResult

log = logging.getLogger(__name__)

HELP = "sample the test split with a checkpoint and write metrics, JSON and grids"


def register(subparsers) -> None:
    add_config_arguments(add_command(subparsers, "evaluate", HELP))


# What the checkpoint fixes: its networks and noise schedule are rebuilt from its own config, and the
# records it can take have its sizes. An override of these would be silently ignored (or fail after sampling).
FIXED_BY_CHECKPOINT = ("stage", "model.", "diffusion.")
DATA_FIXED_BY_CHECKPOINT = ("hr_size", "scale", "channels")


def _get(cfg, dotted: str):
    node = cfg
    for part in dotted.split("."):
        node = node.get(part) if hasattr(node, "get") else None
    return node


def check_against_checkpoint(cfg: DictConfig, overrides, method, ckpt) -> None:
    """Refuse overrides the checkpoint's own config overrules, and data sizes it was not trained on."""
    stored = method.cfg
    for item in overrides:
        key = item.split("=", 1)[0]
        if key.startswith(FIXED_BY_CHECKPOINT) and _get(cfg, key) != _get(stored, key):
            raise UserError(f"override {key} cannot apply: evaluate uses the network and schedule stored in {ckpt} "
                            f"({key}={_get(stored, key)}); drop it, or train a model with it")
    for key in DATA_FIXED_BY_CHECKPOINT:
        ours, theirs = cfg.data[key], stored.data[key]
        if ours != theirs:
            raise UserError(f"{ckpt} was trained with data.{key}={theirs} but this evaluation has data.{key}={ours}; "
                            f"use the config the checkpoint was trained with (or data.{key}={theirs})")


def eval_folder(cfg: DictConfig, ckpt: Path, explicit_root: bool = False) -> tuple[Path, Path | None]:
    """Where results go, and the run folder made for them (None when none was made): a new run folder
    under run_root when `run_root=` was given on the command line (`<run_root>/<name>/<id>/eval/`),
    else the checkpoint's run folder's eval/ when it has one, else a new run folder's. eval/ itself
    appears only when the results are written; a new run folder holds just its config.yaml until then
    (so a full disk shows before any compute) and is removed again if the evaluation fails."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    if not explicit_root and (run / "config.yaml").is_file():
        folder = run / "eval"
        if not os.access(folder if folder.is_dir() else run, os.W_OK):
            raise UserError(f"{folder} is not writable; copy the run folder somewhere writable and evaluate there")
        return folder, None
    from ..runs import RunDir

    existed = bool(cfg.run_id) and (Path(cfg.run_root) / cfg.name / str(cfg.run_id)).exists()
    made = RunDir.create(cfg)
    return made.eval_dir, None if existed else made.path


def check_not_replacing(folder: Path, name: str, settings: dict[str, Any], reference: bool = False) -> None:
    """Refuse to write eval/<name>.json over the result of an evaluation with other settings (any
    sampler key, the seeds, the metrics, the LR selection, the dataset: `evaluation_settings`). The
    same settings may refresh their own result."""
    path = folder / f"{name}.json"
    if not path.is_file():
        return
    try:
        stored = json.loads(path.read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        stored = "unreadable"
    settings = json.loads(json.dumps(settings))  # as it would be stored: tuples are lists
    if stored == settings:
        return
    if stored == "unreadable":
        what = "it is not a readable eval JSON"
    elif not isinstance(stored, dict):
        what = "it records no settings: an earlier satdiffmoe wrote it"
    else:
        what = "it was evaluated with other settings: " + _differences(stored, settings)
    fix = "set eval.references=false" if reference else "choose another eval.name"
    raise UserError(f"{path} would be replaced, but {what}; it is kept: {fix}, evaluate into a new run folder "
                    "with run_root=DIR, or delete the file to replace it")


def _differences(stored: dict[str, Any], ours: dict[str, Any], shown: int = 3) -> str:
    theirs, mine = _flat(stored), _flat(ours)
    keys = [key for key in dict.fromkeys([*mine, *theirs]) if mine.get(key, "-") != theirs.get(key, "-")]
    parts = [f"{key}={json.dumps(mine.get(key))} here, {json.dumps(theirs.get(key))} in the file" for key in keys[:shown]]
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return "; ".join(parts) + more


def _flat(tree: dict[str, Any] | None, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in (tree or {}).items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_result(folder: Path, result: EvalResult, grid: bool = True) -> Path:
    """eval/<name>.json (+ .jsonl rows, + .png grid); returns the JSON path.

    Rows and grid first, the JSON last, each through a temp file and a rename: a JSON on disk always
    comes with its own rows, and readers (reports, sweeps) never see half a file.
    """
    from ..evaluation.grids import save_grid

    name = result.summary["name"]
    target = folder / f"{name}.json"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _replace_text(folder / f"{name}.jsonl", "".join(json.dumps(row, allow_nan=False) + "\n" for row in result.rows))
        if grid and result.grid:
            partial = folder / f".{name}.partial.png"
            save_grid(partial, **result.grid)
            os.replace(partial, folder / f"{name}.png")
        _replace_text(target, json.dumps(result.summary, indent=2, allow_nan=False))
    except OSError as exc:
        raise UserError(f"cannot write the evaluation {name} into {folder}: {exc.strerror or exc}; "
                        "free some space and evaluate again") from None
    return target


def _replace_text(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def format_metrics(summary: dict[str, Any]) -> str:
    parts: list[str] = []
    for name, value in summary["metrics"].items():
        if "unavailable" in value:
            parts.append(f"{name}=unavailable")
        else:
            ci = f"±{value['ci95']:.3g}" if value.get("ci95") is not None else ""
            parts.append(f"{name}={value['mean']:.4g}{ci}")
    return " ".join(parts)


def run(args) -> int:
    with keeping("no results written"):  # the precise line, once the eval folder is known, comes from inside
        return _run(args)


def _run(args) -> int:
    from ..config import load_config

    cfg = load_config(args.config, args.overrides)
    if not cfg.ckpt:
        raise UserError("evaluate needs a model: add ckpt=runs/<name>/<run>/checkpoints/last.ckpt (or the run folder)")
    from ..data.collate import check_batch_memory
    from ..evaluation.evaluator import Evaluator, method_settings, result_name
    from ..evaluation.references import REFERENCES, AutoencoderReconstruction
    from ..pipelines.registry import is_pipeline_folder
    from ..runs import seed_everything
    from ..training.checkpoints import load_sampler, resolve_checkpoint

    d = cfg.data
    check_batch_memory(d, d.eval_batch_size, max(d.max_lr, d.num_lr), "data.eval_batch_size")
    ckpt = Path(cfg.ckpt) if is_pipeline_folder(cfg.ckpt) else resolve_checkpoint(cfg.ckpt)
    seed_everything(cfg.seed)
    method = load_sampler(ckpt)  # a pipeline (diffusion stages, exported folders) or a regression task
    if method.cfg is not None:
        check_against_checkpoint(cfg, args.overrides, method, ckpt)
    explicit_root = any(str(item).split("=", 1)[0].lstrip("+") == "run_root" for item in args.overrides or [])
    folder, made = eval_folder(cfg, Path(ckpt), explicit_root)
    untouched = (f"the evaluations already in {folder} are untouched" if made is None
                 else f"the new run folder {made} is removed again")
    methods = list(REFERENCES) + ([AutoencoderReconstruction(method)] if getattr(method, "vae", None) else [])
    methods = methods if cfg.eval.references else []
    try:
        for part in [method, *methods]:  # before sampling; the real names are checked again before writing
            check_not_replacing(folder, result_name(part, cfg), method_settings(part, cfg),
                                reference=part is not method)
        with keeping(f"no results written; {untouched}"):
            evaluator = Evaluator(cfg)
            result = evaluator.evaluate(method, cfg, uncertainty_references=bool(cfg.eval.references))
            log.info("%s: %s (%.2f s/image, NFE %d)", result.summary["name"], format_metrics(result.summary),
                     result.summary["seconds_per_image"], result.summary["nfe"])
            references = list(result.companions)  # the free uncertainty maps scored against its error
            for reference in methods:
                references.append(evaluator.evaluate(reference, cfg))
                log.info("%s: %s", references[-1].summary["name"], format_metrics(references[-1].summary))
    except BaseException:  # a failed (or interrupted) evaluation leaves no empty run folder behind
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise
    # One evaluation = the model's result and its references, written only once all are computed (a
    # kill mid-way leaves the previous set untouched) and stamped with one id that `report` checks;
    # Ctrl-C / SIGTERM wait for the whole set (held).
    stamp = {"id": uuid.uuid4().hex, "files": [r.summary["name"] for r in [result, *references]]}
    for part in [result, *references]:
        check_not_replacing(folder, part.summary["name"], part.summary["settings"], reference=part is not result)
    with keeping(f"after the evaluation was written in full to {folder}"):
        with held():
            for part in [*references, result]:  # the model's JSON last: it is what marks the set complete
                part.summary["evaluation"] = stamp
                path = write_result(folder, part, grid=part is result)
        log.info("wrote %s", ", ".join(f"{name}.json" for name in stamp["files"]))
        print(path)
    return 0
