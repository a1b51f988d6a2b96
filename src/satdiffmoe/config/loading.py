"""Load, compose, override and validate experiment configs.

    cfg = load_config("experiments/quickstart.yaml", ["stage=prior", "train.lr=1e-4"])

* `extends: base.yaml` (or a list) composes files; paths are relative to the extending file and the
  extending file wins.
* Dotted `key=value` overrides are parsed by OmegaConf (never `eval`).
* Everything is merged onto the typed `ExperimentConfig`, so a misspelled key is an error naming the
  key and the closest valid one, and a wrong type names the expected type.
* `check_values` rejects impossible values (scale not dividing the HR size, NFE 0, ...).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ..errors import UserError
from .schema import CONSENSUS_RULES, LR_POLICIES, STAGES, ExperimentConfig


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise UserError(f"config file not found: {path} (configs live in experiments/, e.g. experiments/quickstart.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends
        raise UserError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(cfg, DictConfig):
        raise UserError(f"config {path} must be a YAML mapping at the top level")
    return cfg


def _compose(path: Path, seen: list[Path] | None = None) -> DictConfig:
    """Read `path` and recursively merge the files named in its `extends:` under it."""
    seen = list(seen or [])
    path = path.resolve()
    if path in seen:
        raise UserError(f"config {path} extends itself (cycle: {' -> '.join(map(str, seen + [path]))})")
    cfg = _read_yaml(path)
    bases = cfg.pop("extends", None)
    if bases is None:
        return cfg
    if isinstance(bases, str):
        bases = [bases]
    merged = OmegaConf.create()
    for base in bases:
        merged = OmegaConf.merge(merged, _compose(path.parent / str(base), seen + [path]))
    return OmegaConf.merge(merged, cfg)


def _valid_keys(node, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            full = f"{prefix}.{key}" if prefix else str(key)
            keys.append(full)
            keys.extend(_valid_keys(node._get_node(key), full))
    return keys


def _explain(exc: OmegaConfBaseException, schema: DictConfig, where: str) -> UserError:
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError) or "not in struct" in str(exc) or "Key '" in str(exc) and "not in" in str(exc):
        valid = _valid_keys(schema)
        close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
        if not close:  # compare the last component against siblings
            leaf = str(key).rsplit(".", 1)[-1]
            parent = str(key).rsplit(".", 1)[0] if "." in str(key) else ""
            siblings = [k for k in valid if k.rsplit(".", 1)[0] == parent or (not parent and "." not in k)]
            close = difflib.get_close_matches(leaf, [s.rsplit(".", 1)[-1] for s in siblings], n=1, cutoff=0.5)
            close = [f"{parent}.{close[0]}" if parent else close[0]] if close else []
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return UserError(f"unknown config key '{key}' in {where}{hint}")
    if isinstance(exc, ValidationError):
        msg = str(exc).splitlines()[0]
        return UserError(f"bad value for config key '{key}' in {where}: {msg}")
    return UserError(f"invalid config in {where}: {str(exc).splitlines()[0]}")


def _merge_checked(base: DictConfig, update, schema: DictConfig, where: str) -> DictConfig:
    try:
        return OmegaConf.merge(base, update)
    except OmegaConfBaseException as exc:
        raise _explain(exc, schema, where) from None


def parse_overrides(overrides: Iterable[str]) -> DictConfig:
    """Dotted `a.b=value` pairs -> a nested DictConfig (values parsed as YAML scalars/lists)."""
    items = list(overrides)
    for item in items:
        if "=" not in item or item.startswith("="):
            raise UserError(f"override '{item}' is not of the form dotted.key=value (e.g. train.lr=1e-4)")
    try:
        return OmegaConf.from_dotlist(items)
    except Exception as exc:
        raise UserError(f"cannot parse overrides {items}: {str(exc).splitlines()[0]}") from None


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), check: bool = True
) -> DictConfig:
    """Compose `path`, apply `overrides`, validate against the schema; returns a read-only config."""
    schema = OmegaConf.structured(ExperimentConfig)
    cfg = schema
    if path is not None:
        cfg = _merge_checked(cfg, _compose(Path(path)), schema, str(path))
    if overrides:
        cfg = _merge_checked(cfg, parse_overrides(overrides), schema, "command-line overrides")
    if check:
        check_values(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def config_from_dict(data: dict, check: bool = True) -> DictConfig:
    """Validate a plain dict (e.g. the config stored inside a checkpoint) against the schema."""
    schema = OmegaConf.structured(ExperimentConfig)
    cfg = _merge_checked(schema, OmegaConf.create(data), schema, "stored config")
    if check:
        check_values(cfg)
    return cfg


def with_overrides(cfg: DictConfig, overrides: Sequence[str] | dict) -> DictConfig:
    """A validated copy of `cfg` with dotted overrides (list of 'k=v' or a {dotted: value} dict)."""
    if isinstance(overrides, dict):
        overrides = [f"{k}={_yaml_scalar(v)}" for k, v in overrides.items()]
    schema = OmegaConf.structured(ExperimentConfig)
    merged = _merge_checked(OmegaConf.merge(schema, cfg), parse_overrides(overrides), schema, "overrides")
    check_values(merged)
    return merged


def _yaml_scalar(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_yaml_scalar(v) for v in value) + "]"
    return str(value)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_values(cfg: DictConfig) -> None:
    """Reject values that type-check but cannot work, with the fix in the message."""
    _require(cfg.stage in STAGES, f"stage '{cfg.stage}' is not one of {', '.join(STAGES)}")
    d, s, t = cfg.data, cfg.sampler, cfg.train
    _require(d.scale >= 1, f"data.scale must be >= 1, got {d.scale}")
    _require(d.hr_size > 0 and d.hr_size % d.scale == 0,
             f"data.scale={d.scale} does not divide data.hr_size={d.hr_size}; pick a scale that divides it")
    _require(d.batch_size >= 1 and d.eval_batch_size >= 1, "data.batch_size and data.eval_batch_size must be >= 1")
    _require(d.num_lr == -1 or d.num_lr >= 1, f"data.num_lr must be >= 1 (or -1 for all), got {d.num_lr}")
    _require(d.train_lr_policy in LR_POLICIES, f"data.train_lr_policy must be one of {LR_POLICIES}")
    _require(d.eval_lr_policy in LR_POLICIES, f"data.eval_lr_policy must be one of {LR_POLICIES}")
    _require(d.num_workers >= 0, "data.num_workers must be >= 0")
    _require(s.nfe >= 1, f"sampler.nfe must be >= 1, got {s.nfe}")
    _require(s.nfe <= cfg.diffusion.num_train_timesteps,
             f"sampler.nfe={s.nfe} exceeds diffusion.num_train_timesteps={cfg.diffusion.num_train_timesteps}")
    _require(s.fusion_every is None or s.fusion_every >= 0,
             f"sampler.fusion_every must be >= 1 (or null/0 for no fusion), got {s.fusion_every}")
    _require(s.consensus in CONSENSUS_RULES, f"sampler.consensus '{s.consensus}' is not one of {CONSENSUS_RULES}")
    _require(0.0 <= s.pull <= 1.0, f"sampler.pull must be in [0, 1], got {s.pull}")
    _require(s.eta >= 0.0, f"sampler.eta must be >= 0, got {s.eta}")
    _require(s.tau > 0, f"sampler.tau must be > 0 days, got {s.tau}")
    _require(s.scheduler in ("ddim", "dpm"), f"sampler.scheduler must be ddim or dpm, got {s.scheduler}")
    _require(s.chunk_size >= 1, "sampler.chunk_size must be >= 1")
    _require(s.precision in ("32", "bf16"), f"sampler.precision must be 32 or bf16, got {s.precision}")
    _require(t.matmul_precision in ("highest", "high", "medium"),
             f"train.matmul_precision must be highest, high or medium, got {t.matmul_precision}")
    _require(t.max_steps >= 1, f"train.max_steps must be >= 1, got {t.max_steps}")
    _require(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    _require(t.val_every >= 1, "train.val_every must be >= 1")
    _require(0.0 <= t.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    _require(0.0 <= cfg.model.cond_dropout < 1.0, "model.cond_dropout must be in [0, 1)")
    _require(cfg.model.conditioning in ("latent", "pixel"), "model.conditioning must be latent or pixel")
    _require(cfg.diffusion.prediction_type in ("epsilon", "v_prediction"),
             "diffusion.prediction_type must be epsilon or v_prediction")
    _require(cfg.logging.wandb.mode in ("offline", "online", "disabled"),
             "logging.wandb.mode must be offline, online or disabled")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def as_plain(cfg) -> dict:
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
