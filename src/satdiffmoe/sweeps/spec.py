"""The sweep file: what an Optuna study varies, measures and where it keeps its trials.

    spec = load_sweep("sweeps/fusion_ablation.yaml", ["n_trials=12", "ckpt=runs/.../last.ckpt"])

A sweep file is OmegaConf YAML merged onto `SweepSpec`, with the same error messages as experiment
configs (unknown key -> the closest valid one). Search-space keys are dotted experiment-config keys
(`sampler.nfe`, `data.num_lr`, ...) and are checked against the experiment schema at load time.
The string "off" as a parameter value means null (e.g. `sampler.fusion_every: "off"` = no fusion);
quote it, because YAML reads a bare `off` as the boolean false.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from ..config.loading import _merge_checked, _read_yaml, _valid_keys, check_seed, parse_overrides
from ..config.schema import ExperimentConfig
from ..errors import UserError

OFF = "off"  # parameter value meaning "null" in the experiment config
KINDS = ("evaluate", "train")
SAMPLERS = ("grid", "tpe", "random")
PRUNERS = ("none", "median", "hyperband", "threshold")
PARAM_TYPES = ("categorical", "int", "float")
DIRECTIONS = ("maximize", "minimize")


@dataclass
class ObjectiveSpec:
    metric: str = "psnr"  # eval metric (metrics.<name>.mean) or a summary number: seconds_per_image, wall_time_s
    direction: str = "maximize"  # maximize | minimize


@dataclass
class ParamSpec:
    type: str = "categorical"  # categorical | int | float
    choices: list[Any] | None = None  # categorical values ("off" = null)
    low: float | None = None  # int / float range (inclusive)
    high: float | None = None
    step: float | None = None  # int / float step; grid sampling of an int range needs none (1)
    log: bool = False  # sample on a log scale
    when: dict[str, Any] = field(default_factory=dict)  # only sampled when earlier params have these values


@dataclass
class SamplerSpec:
    name: str = "tpe"  # grid | tpe | random
    seed: int = 0
    n_startup_trials: int = 5  # TPE: random trials before the model kicks in


@dataclass
class PrunerSpec:
    name: str = "none"  # none | median | hyperband | threshold (training sweeps report the validation metric)
    n_startup_trials: int = 2  # median: trials that are never pruned
    n_warmup_steps: int = 0  # median, threshold: reports before pruning may start
    lower: float | None = None  # threshold: prune a trial whose reported metric falls below this
    upper: float | None = None  # threshold: ... or rises above this


@dataclass
class HeartbeatSpec:
    interval: int | None = 60  # seconds between heartbeats of a running trial; null = no dead-worker detection
    grace: int | None = 120  # a running trial silent for this long is failed and retried
    max_retry: int = 2  # retries of a failed trial (dead worker or error) before it stays failed


@dataclass
class SweepWandbSpec:
    mode: str = "offline"  # offline | online | disabled (WANDB_MODE overrides)
    project: str = "satdiffmoe-sweeps"
    entity: str | None = None
    tags: list[str] = field(default_factory=list)


@dataclass
class SweepSpec:
    study: str = MISSING  # study name; also the W&B group and the folder runs/sweeps/<study>
    kind: str = "evaluate"  # evaluate = inference knobs on one checkpoint; train = train then evaluate
    config: str = MISSING  # base experiment config; in the file: relative to the file, on the command line: to cwd
    ckpt: str | None = None  # evaluate: checkpoint or run folder, loaded once per worker (default: config's ckpt)
    base_overrides: list[str] = field(default_factory=list)  # fixed `key=value` overrides for every trial
    params: dict[str, ParamSpec] = field(default_factory=dict)  # search space over dotted config keys
    objectives: list[ObjectiveSpec] = field(default_factory=lambda: [ObjectiveSpec()])
    sampler: SamplerSpec = field(default_factory=SamplerSpec)
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    prune_monitor: str = "val/psnr"  # train: validation metric reported to the pruner
    seeds: int = 1  # evaluation seeds per trial (eval.seeds = 0..seeds-1; metrics are their mean)
    n_trials: int | None = None  # total trials of the study; null = the whole grid (grid sampler only)
    storage: str | None = None  # default sqlite:///<sweep folder>/study.db; postgresql://... ; journal:path.log
    out: str | None = None  # sweep folder; default runs/sweeps/<study>
    heartbeat: HeartbeatSpec = field(default_factory=HeartbeatSpec)
    wandb: SweepWandbSpec = field(default_factory=SweepWandbSpec)


def load_sweep(path: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """Read a sweep file, apply `key=value` overrides and validate; returns a read-only config."""
    schema = OmegaConf.structured(SweepSpec)
    raw = _read_sweep_yaml(Path(path))
    _check_params_shape(raw.get("params"), str(path))
    spec = _merge_checked(schema, raw, schema, str(path))
    # Paths written in the file are relative to the file (like `extends:`), so a sweep runs from anywhere.
    for key in ("config", "ckpt"):
        value = spec[key] if not OmegaConf.is_missing(spec, key) else None
        if value and not Path(value).is_absolute():
            spec[key] = str((Path(path).parent / value).resolve())
    if overrides:
        parsed = parse_overrides(overrides)
        _check_params_shape(parsed.get("params"), "command-line overrides")
        spec = _merge_checked(spec, parsed, schema, "command-line overrides")
    missing = sorted(OmegaConf.missing_keys(spec))
    if missing:
        raise UserError(f"sweep {path} does not set {', '.join(missing)}; add it to the file or pass {missing[0]}=...")
    check_sweep(spec, str(path))
    OmegaConf.set_readonly(spec, True)
    return spec


def _read_sweep_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise UserError(f"sweep file not found: {path} "
                        "(sweep definitions live in sweeps/, e.g. sweeps/fusion_ablation.yaml)")
    return _read_yaml(path)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def _check_params_shape(params, where: str) -> None:
    """`params` maps dotted keys to mappings; a list (or a bare value per key) failed as a TypeError
    inside OmegaConf's merge, or as a message about ParamSpec classes."""
    if params is None:
        return
    if not isinstance(params, DictConfig):
        given = OmegaConf.to_container(params) if OmegaConf.is_config(params) else params
        raise UserError(f"params in {where} must map config keys to search spaces, e.g. "
                        f"params: {{sampler.nfe: {{choices: [10, 50]}}}}; got {given!r}")
    for key, param in params.items():
        _require(isinstance(param, DictConfig),
                 f"params.{key} in {where} must be a mapping such as {{choices: [10, 50]}} or {{type: int, low: 1, "
                 f"high: 8}}; got {param!r}")
        choices = param.get("choices")
        _require(choices is None or isinstance(choices, ListConfig),
                 f"params.{key}.choices in {where} must be a list of values, e.g. [10, 50]; got {choices!r}")


def _one_of(value: str, allowed: Sequence[str], key: str, where: str) -> None:
    _require(value in allowed, f"{key} '{value}' in {where} is not one of {', '.join(allowed)}")


def check_sweep(spec: DictConfig, where: str) -> None:
    """Reject sweep files that parse but cannot run, naming the key and the fix."""
    _one_of(spec.kind, KINDS, "kind", where)
    _one_of(spec.sampler.name, SAMPLERS, "sampler.name", where)
    _one_of(spec.pruner.name, PRUNERS, "pruner.name", where)
    if spec.pruner.name == "threshold":
        _require(spec.pruner.lower is not None or spec.pruner.upper is not None,
                 f"pruner threshold needs pruner.lower and/or pruner.upper in {where}")
    _one_of(spec.wandb.mode, ("offline", "online", "disabled"), "wandb.mode", where)
    _require(spec.seeds >= 1, f"seeds must be >= 1 in {where}, got {spec.seeds}")
    check_seed(spec.sampler.seed, "sampler.seed")
    _require(spec.n_trials is None or spec.n_trials >= 1,
             f"n_trials must be >= 1 (or null = the whole grid) in {where}, got {spec.n_trials}")
    _require(len(spec.objectives) > 0,
             f"sweep {where} has no objectives; add objectives: [{{metric: psnr, direction: maximize}}]")
    for objective in spec.objectives:
        _one_of(objective.direction, DIRECTIONS, f"objective '{objective.metric}' direction", where)
    if len(spec.objectives) > 1:
        _require(spec.pruner.name == "none", f"pruning needs a single objective; set pruner.name=none in {where}")
    _check_search_space(spec, where)
    if spec.sampler.name != "grid":
        _require(spec.n_trials is not None and spec.n_trials >= 1,
                 f"sampler '{spec.sampler.name}' needs n_trials >= 1 in {where} (only a grid knows its own size)")
    hb = spec.heartbeat
    _require(hb.interval is None or hb.interval >= 1, f"heartbeat.interval must be >= 1 s or null in {where}")
    _require(hb.grace is None or hb.interval is None or hb.grace > hb.interval,
             f"heartbeat.grace ({hb.grace}) must exceed heartbeat.interval ({hb.interval}) in {where}")


def _check_search_space(spec: DictConfig, where: str) -> None:
    _require(len(spec.params) > 0, f"sweep {where} has no params; add e.g. params: {{sampler.nfe: {{choices: [10, 50]}}}}")
    experiment_keys = set(_valid_keys(OmegaConf.structured(ExperimentConfig)))
    for key in [str(k) for k in spec.params] + _dotted_keys(spec.base_overrides):
        if key not in experiment_keys:
            close = difflib.get_close_matches(key, sorted(experiment_keys), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UserError(f"'{key}' in {where} is not an experiment config key{hint}")
    names = [str(k) for k in spec.params]
    for index, (key, param) in enumerate(spec.params.items()):
        _check_param(str(key), param, where)
        for condition in param.when:
            _require(condition in names[:index],
                     f"params.{key}.when names '{condition}', which must be a param listed before it in {where}")
        if spec.sampler.name == "grid":
            grid_values(str(key), param)  # raises for a continuous range
            _require(not param.when, f"params.{key}.when in {where}: a grid has no conditional params; use tpe or random")


def _dotted_keys(assignments: Sequence[str]) -> list[str]:
    for item in assignments:
        _require("=" in item, f"base_overrides entry '{item}' is not of the form dotted.key=value")
    return [item.split("=", 1)[0].strip() for item in assignments]


def _check_param(key: str, param, where: str) -> None:
    _one_of(param.type, PARAM_TYPES, f"params.{key}.type", where)
    if param.type == "categorical":
        _require(bool(param.choices), f"params.{key} in {where} is categorical but has no choices")
        return
    _require(param.low is not None and param.high is not None and param.low <= param.high,
             f"params.{key} in {where} needs low <= high for a {param.type} range")
    _require(not (param.log and param.low <= 0), f"params.{key} in {where}: a log range needs low > 0")


def grid_values(key: str, param) -> list[Any]:
    """The values a grid sampler enumerates for one parameter."""
    if param.type == "categorical":
        return list(param.choices)
    if param.type == "int" and not param.log:
        return list(range(int(param.low), int(param.high) + 1, int(param.step or 1)))
    raise UserError(f"the grid sampler cannot enumerate params.{key} ({param.type} range); give it choices: [...]")


def search_space(spec: DictConfig) -> dict[str, list[Any]]:
    """{dotted key: values} for optuna.samplers.GridSampler."""
    return {str(key): grid_values(str(key), param) for key, param in spec.params.items()}


def grid_size(spec: DictConfig) -> int:
    return len(list(itertools.product(*search_space(spec).values())))


def to_config_value(value: Any) -> Any:
    """A trial parameter as the experiment config wants it ("off" -> None)."""
    return None if value == OFF else value


def read_metric(summary: dict, name: str) -> float:
    """An objective value from an evaluation summary: `metrics.<name>.mean`, else a (dotted) summary number."""
    metric = summary.get("metrics", {}).get(name)
    if metric is not None:
        if "unavailable" in metric:
            raise UserError(f"objective metric '{name}' is unavailable: {metric['unavailable']}; pick another metric")
        return float(metric["mean"])
    node: Any = summary
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            known = sorted(summary.get("metrics", {})) + [k for k, v in summary.items() if isinstance(v, (int, float))]
            raise UserError(f"objective metric '{name}' is not in the evaluation summary; known: {', '.join(known)}")
        node = node[part]
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        raise UserError(f"objective metric '{name}' is not a number in the evaluation summary")
    return float(node)
