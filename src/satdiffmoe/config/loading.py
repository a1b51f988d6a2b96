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
import math
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from ..errors import UserError
from ..sampling.config import SamplerConfig
from .schema import (
    BETA_SCHEDULES,
    CONDITIONINGS,
    LR_POLICIES,
    LR_SCHEDULES,
    STAGES,
    ExperimentConfig,
)


def _read_yaml(path: Path) -> DictConfig:
    if not path.is_file():
        raise UserError(f"config file not found: {path} (configs live in experiments/, e.g. experiments/quickstart.yaml)")
    try:
        cfg = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends
        raise UserError(f"cannot parse config {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(cfg, DictConfig):
        raise UserError(f"config {path} must be a YAML mapping at the top level")
    if not cfg:  # an empty (or comment-only) file would silently mean "every default"
        raise UserError(f"config {path} is empty; give at least `extends: <base>.yaml` or the keys that differ "
                        "from the defaults (see experiments/quickstart.yaml)")
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
    if not isinstance(bases, ListConfig) and not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
        raise UserError(f"extends: in {path} must be a file name or a list of file names, got {bases!r}")
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
    _check_resolves(cfg, str(path or "command-line overrides"))
    if check:
        check_values(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _check_resolves(cfg: DictConfig, where: str) -> None:
    """Every `${...}` interpolation resolves now, not as a traceback when a stage first reads it."""
    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        raise UserError(f"config key '{key}' in {where} does not resolve: {str(exc).splitlines()[0]}") from None


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


SEED_MAX = 2 ** 32 - 1  # numpy's, Lightning's and Optuna's seed range is 0..2**32-1 (torch takes more)


def check_seed(value, key: str) -> None:
    """A seed every random number generator here accepts; `lightning.seed_everything(-1)` raised deep in
    `train`, and torch's `manual_seed(2**64)` an OverflowError in `sample`."""
    _require(isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX,
             f"{key}={value} is not a seed; give an integer from 0 to {SEED_MAX}")


def _float_leaves(node, prefix: str = ""):
    """(dotted key, value) of every float in the config (lists included)."""
    items = node.items() if isinstance(node, DictConfig) else enumerate(node) if isinstance(node, ListConfig) else ()
    for key, value in items:
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, (DictConfig, ListConfig)):
            yield from _float_leaves(value, full)
        elif isinstance(value, float):
            yield full, value


def check_values(cfg: DictConfig) -> None:
    """Reject values that type-check but cannot work, with the fix in the message."""
    # NaN and inf pass every `>=` test below as False/True by accident (nan >= 0 is False, inf > 0 is
    # True): `guidance_scale=nan` gave black images, so every float knob must be finite first.
    for key, value in _float_leaves(cfg):
        _require(math.isfinite(value), f"{key}={value} is not a finite number; give a finite value")
    _require(cfg.stage in STAGES, f"stage '{cfg.stage}' is not one of {', '.join(STAGES)}")
    check_seed(cfg.seed, "seed")
    _require(len(cfg.eval.seeds) > 0, "eval.seeds is empty, so nothing would be sampled; give e.g. eval.seeds=[0]")
    for index, seed in enumerate(cfg.eval.seeds):
        check_seed(seed, f"eval.seeds[{index}]")
    _check_model_sizes(cfg.model)
    d, s, t = cfg.data, cfg.sampler, cfg.train
    lr_side = d.hr_size // d.scale if d.scale >= 1 else 0
    _require(d.scale < 1 or d.hr_size % d.scale or lr_side >= 2,
             f"data.hr_size={d.hr_size} / data.scale={d.scale} gives {lr_side} px LR images; "
             "the LR side must be at least 2 px (raise data.hr_size or lower data.scale)")
    cpus = os.cpu_count() or 1
    _require(d.num_workers <= 4 * cpus,
             f"data.num_workers={d.num_workers} is more than 4x this machine's {cpus} CPUs; "
             f"use at most {4 * cpus} (0-{cpus} is usual)")
    _require(d.epoch_length >= 1, f"data.epoch_length must be >= 1, got {d.epoch_length}")
    _require(d.shuffle_buffer >= 0, f"data.shuffle_buffer must be >= 0, got {d.shuffle_buffer}")
    _require(d.max_lr >= 1, f"data.max_lr must be >= 1, got {d.max_lr}")
    _require(d.val_subset == -1 or d.val_subset >= 1,
             f"data.val_subset must be >= 1 (or -1 for the whole split), got {d.val_subset}")
    _require(d.test_subset == -1 or d.test_subset >= 1,
             f"data.test_subset must be >= 1 (or -1 for the whole split), got {d.test_subset}")
    _require(d.max_consecutive_skips >= 0, f"data.max_consecutive_skips must be >= 0 (0 = never stop), "
                                           f"got {d.max_consecutive_skips}")
    _require(t.log_every >= 1, f"train.log_every must be >= 1 (steps between loss logs), got {t.log_every}")
    _require(1 <= t.val_nfe <= cfg.diffusion.num_train_timesteps,
             f"train.val_nfe={t.val_nfe} must be between 1 and diffusion.num_train_timesteps="
             f"{cfg.diffusion.num_train_timesteps}")
    _require(t.ckpt_top_k >= -1, f"train.ckpt_top_k must be >= -1 (-1 = keep all, 0 = none), got {t.ckpt_top_k}")
    _require(t.accumulate >= 1, f"train.accumulate must be >= 1, got {t.accumulate}")
    _require(t.ddp_timeout_s > 0, f"train.ddp_timeout_s must be > 0 seconds, got {t.ddp_timeout_s}")
    _require(t.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {t.warmup_steps}")
    _require(t.weight_decay >= 0, f"train.weight_decay must be >= 0, got {t.weight_decay}")
    _require(t.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 = off), got {t.grad_clip}")
    _require(t.kl_weight >= 0, f"train.kl_weight must be >= 0, got {t.kl_weight}")
    _require(cfg.logging.wandb.init_timeout_s > 0,
             f"logging.wandb.init_timeout_s must be > 0 (seconds), got {cfg.logging.wandb.init_timeout_s}")
    _require(t.lr_schedule in LR_SCHEDULES, f"train.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                                            f"got {t.lr_schedule}")
    _require(cfg.diffusion.num_train_timesteps >= 1, "diffusion.num_train_timesteps must be >= 1")
    _require(cfg.diffusion.beta_schedule in BETA_SCHEDULES,
             f"diffusion.beta_schedule '{cfg.diffusion.beta_schedule}' is not one of {', '.join(BETA_SCHEDULES)}")
    _require(0 < cfg.diffusion.beta_start < cfg.diffusion.beta_end < 1,
             f"diffusion.beta_start={cfg.diffusion.beta_start} and beta_end={cfg.diffusion.beta_end} must satisfy "
             "0 < beta_start < beta_end < 1")
    try:  # the sampler's own domain checks (sampling/config.py), shared with the sampler itself
        SamplerConfig.from_any(s).check(cfg.diffusion.num_train_timesteps)
    except ValueError as error:
        raise UserError(str(error)) from None
    _check_eval_name(cfg.eval.name)
    _check_run_id(cfg.run_id)
    _require(d.scale >= 1, f"data.scale must be >= 1, got {d.scale}")
    _require(d.hr_size > 0 and d.hr_size % d.scale == 0,
             f"data.scale={d.scale} does not divide data.hr_size={d.hr_size}; pick a scale that divides it")
    _require(d.batch_size >= 1 and d.eval_batch_size >= 1, "data.batch_size and data.eval_batch_size must be >= 1")
    _require(d.num_lr == -1 or d.num_lr >= 1, f"data.num_lr must be >= 1 (or -1 for all), got {d.num_lr}")
    _require(d.train_lr_policy in LR_POLICIES, f"data.train_lr_policy must be one of {LR_POLICIES}")
    _require(d.eval_lr_policy in LR_POLICIES, f"data.eval_lr_policy must be one of {LR_POLICIES}")
    _require(d.num_workers >= 0, "data.num_workers must be >= 0")
    _check_lr_bands(d)
    _require(t.matmul_precision in ("highest", "high", "medium"),
             f"train.matmul_precision must be highest, high or medium, got {t.matmul_precision}")
    _require(t.max_steps >= 1, f"train.max_steps must be >= 1, got {t.max_steps}")
    _require(t.lr > 0, f"train.lr must be > 0, got {t.lr}")
    _require(t.val_every >= 1, "train.val_every must be >= 1")
    _require(0.0 <= t.ema_decay < 1.0, f"train.ema_decay must be in [0, 1), got {t.ema_decay}")
    _require(0.0 <= cfg.model.cond_dropout < 1.0, "model.cond_dropout must be in [0, 1)")
    _require(cfg.model.conditioning in CONDITIONINGS,
             f"model.conditioning must be one of {', '.join(CONDITIONINGS)}, got {cfg.model.conditioning}")
    from ..models.trainable import TRAINABLE_MODES  # the modes' one definition

    _require(t.trainable in TRAINABLE_MODES, f"train.trainable must be one of {', '.join(TRAINABLE_MODES)}, "
                                             f"got {t.trainable}")
    _require(t.lora_rank >= 1, f"train.lora_rank must be >= 1, got {t.lora_rank}")
    _require(cfg.model.null_tokens >= 1, f"model.null_tokens must be >= 1, got {cfg.model.null_tokens}")
    _require(cfg.diffusion.prediction_type in ("epsilon", "v_prediction"),
             "diffusion.prediction_type must be epsilon or v_prediction")
    _require(cfg.logging.wandb.mode in ("offline", "online", "disabled"),
             "logging.wandb.mode must be offline, online or disabled")


def _check_model_sizes(m: DictConfig) -> None:
    """Network sizes: an empty or zero-width level list failed as a traceback deep inside diffusers (or
    built a network that cannot run), so every size is checked here, naming the key. A `pretrained`
    folder brings its own sizes."""
    for key, net in (("model.vae", m.vae), ("model.unet", m.unet)):
        if net.pretrained is not None:
            continue
        widths = list(net.block_out_channels)
        _require(len(widths) > 0, f"{key}.block_out_channels is empty; give one width per level, e.g. [32, 64]")
        _require(net.norm_num_groups >= 1, f"{key}.norm_num_groups must be >= 1, got {net.norm_num_groups}")
        _require(all(w >= 1 and w % net.norm_num_groups == 0 for w in widths),
                 f"{key}.block_out_channels={widths} must be positive multiples of {key}.norm_num_groups="
                 f"{net.norm_num_groups} (GroupNorm splits each level's channels into that many groups)")
        _require(net.layers_per_block >= 1, f"{key}.layers_per_block must be >= 1, got {net.layers_per_block}")
    _require(m.vae.latent_channels >= 1, f"model.vae.latent_channels must be >= 1, got {m.vae.latent_channels}")
    _require(m.unet.pretrained is not None or len(m.unet.attention_levels) == len(m.unet.block_out_channels),
             f"model.unet.attention_levels has {len(m.unet.attention_levels)} entries but model.unet.block_out_channels "
             f"has {len(m.unet.block_out_channels)}; give one per level")
    _require(m.unet.attention_head_dim >= 1, f"model.unet.attention_head_dim must be >= 1, got {m.unet.attention_head_dim}")
    for key in ("features", "blocks", "frames", "attention_reduction"):
        _require(m.regression[key] >= 1, f"model.regression.{key} must be >= 1, got {m.regression[key]}")
    _require(m.regression.max_shift >= 0, f"model.regression.max_shift must be >= 0, got {m.regression.max_shift}")
    _require(m.controlnet.frames >= 1 and m.controlnet.temporal_heads >= 1,
             f"model.controlnet.frames and model.controlnet.temporal_heads must be >= 1, got {m.controlnet.frames} "
             f"and {m.controlnet.temporal_heads}")


def _check_lr_bands(d: DictConfig) -> None:
    """data.lr_channels / data.lr_rgb: which LR band observes each HR band (multispectral LR, RGB HR)."""
    _require(d.channels >= 1, f"data.channels must be >= 1, got {d.channels}")
    _require(d.lr_channels is None or d.lr_channels >= 1,
             f"data.lr_channels must be >= 1 (or null = data.channels), got {d.lr_channels}")
    lr_channels = d.channels if d.lr_channels is None else d.lr_channels
    if d.lr_rgb is None:
        _require(lr_channels == d.channels,
                 f"data.lr_channels={lr_channels} differs from data.channels={d.channels}, so data.lr_rgb must name "
                 f"the LR band observing each HR band, e.g. data.lr_rgb=[3,2,1] for Sentinel-2 B4,B3,B2 of 13 bands")
        return
    lr_rgb = list(d.lr_rgb)
    _require(len(lr_rgb) == d.channels,
             f"data.lr_rgb={lr_rgb} must give one LR band per HR band (data.channels={d.channels})")
    _require(all(0 <= i < lr_channels for i in lr_rgb),
             f"data.lr_rgb={lr_rgb} must hold LR band indices 0..{lr_channels - 1} (data.lr_channels={lr_channels})")


def _check_path_component(key: str, name: str, becomes: str) -> None:
    """A value that names one file or folder: never a path that leaves (`..`) or nests (`a/b`)."""
    _require(bool(name) and name not in (".", "..") and not set(name) & set("/\\\0"),
             f"{key}={name!r} must be a plain file name (no '/', '\\', '..' or empty); it becomes {becomes}")


def _check_run_id(run_id: str | None) -> None:
    if run_id is not None:
        _check_path_component("run_id", str(run_id), "the folder <run_root>/<name>/<run_id>")


def _check_eval_name(name: str | None) -> None:
    """eval.name becomes eval/<name>.json: a plain file name, and never one a reference writes."""
    if name is None:
        return
    name = str(name)
    _check_path_component("eval.name", name, "eval/<name>.json")
    from ..evaluation.references import REFERENCES, AutoencoderReconstruction

    reference = re.fullmatch(rf"({'|'.join([*REFERENCES, AutoencoderReconstruction.eval_name])})_n(\d+|all)", name)
    reference = reference.group(1) if reference else None
    _require(reference is None,
             f"eval.name={name!r} is the name of the {reference} reference's result "
             "(eval.references writes it beside the model's); choose another eval.name")


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def as_plain(cfg) -> dict:
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg
