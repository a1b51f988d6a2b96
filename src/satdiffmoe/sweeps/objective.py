"""One trial: apply the sampled parameters to the base config, evaluate (or train then evaluate).

`TrialObjective` is built once per worker process, so inference trials share one loaded model and
one `Evaluator` (whose test set is read once); only the config changes from trial to trial. A
training trial is trained here (training_trial.py), or on every DDP rank (ddp_trials.py), then its
best checkpoint is evaluated.

The objective runs with Ctrl-C / SIGTERM held (study.py): only its long parts, evaluating and
training, let them through, never its writes to the study's storage.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
from omegaconf import DictConfig

from .. import interrupts
from ..errors import UserError
from ..evaluation.catalog import HEADLINE_METRICS, METRICS
from ..evaluation.evaluator import EvalResult, Evaluator
from ..training.checkpoints import load_sampler
from .ddp_trials import lead_trial
from .spec import read_metric
from .training_trial import fit_trial
from .trial_config import base_config, trial_config

log = logging.getLogger(__name__)

PRUNED_REASON = "pruned_reason"  # user attribute explaining why a trial was pruned
FAIL_REASON = "fail_reason"  # user attribute: the error that failed a trial (Optuna itself stores none)


def one_line_reason(exc: BaseException) -> str:
    """A user error's own line; any other exception's last line with its type."""
    lines = str(exc).strip().splitlines()
    line = lines[-1] if lines else ""
    return line if isinstance(exc, UserError) else f"{type(exc).__name__}: {line}".rstrip(": ")


def suggest_params(trial: optuna.Trial, spec: DictConfig) -> dict[str, Any]:
    """Ask the trial for every parameter of the search space (keys are dotted config keys)."""
    params: dict[str, Any] = {}
    for key, p in spec.params.items():
        key = str(key)
        if any(params.get(str(k)) != v for k, v in p.when.items()):
            continue  # a conditional param whose condition does not hold (e.g. tau without time_weighted)
        if p.type == "categorical":
            params[key] = trial.suggest_categorical(key, list(p.choices))
        elif p.type == "int":
            params[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            params[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return params


def _duplicate_of(trial: optuna.Trial) -> int | None:
    """Number of an earlier live trial on the same grid point, if this trial repeats one.

    GridSampler re-issues a running point once the grid is exhausted ("all grids should be
    evaluated"), which with several workers would evaluate that point twice.
    """
    trials = trial.study.get_trials(deepcopy=False)
    grid_id = next(t.system_attrs.get("grid_id") for t in trials if t.number == trial.number)
    if grid_id is None:
        return None
    live = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    for other in trials:
        if other.number < trial.number and other.state in live and other.system_attrs.get("grid_id") == grid_id:
            return other.number
    return None


class TrialObjective:
    """`study.optimize(TrialObjective(spec, sweep_dir), ...)`; returns the declared objective values."""

    def __init__(self, spec: DictConfig, sweep_dir: Path, channel=None):
        self.spec = spec
        self.sweep_dir = Path(sweep_dir)
        self.channel = channel  # DDP training sweeps: rank 0's line to the other ranks (distributed.py)
        self.base_cfg = base_config(spec)
        self._task = None
        self._evaluator = None

    # Loaded on first use, then kept for every later trial of this worker.
    @property
    def evaluator(self):
        if self._evaluator is None:
            self._evaluator = Evaluator(self.base_cfg)
        return self._evaluator

    @property
    def task(self):
        """The model every evaluate trial samples: a checkpoint's pipeline or an exported folder."""
        if self._task is None:
            if not self.base_cfg.ckpt:
                raise UserError("an evaluate sweep needs a checkpoint; set ckpt: in the sweep file or pass ckpt=PATH")
            method = load_sampler(self.base_cfg.ckpt)
            # The evaluator samples on the model's device: use the GPU when the machine has one.
            self._task = method.to("cuda" if torch.cuda.is_available() else "cpu")
        return self._task

    def trial_config(self, number: int, params: dict[str, Any]) -> DictConfig:
        """The base config with trial `number`'s parameters (the same on every DDP rank)."""
        return trial_config(self.spec, self.base_cfg, self.sweep_dir, number, params)

    def __call__(self, trial: optuna.Trial) -> list[float] | float:
        params = suggest_params(trial, self.spec)
        duplicate = _duplicate_of(trial)
        if duplicate is not None:
            self._prune(trial, f"grid point already taken by trial {duplicate}")
        try:
            cfg = self.trial_config(trial.number, params)
        except UserError as exc:  # an impossible combination: record why and let the study go on
            self._prune(trial, str(exc))
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in params.items()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # which machine/process ran it
        try:
            if self.spec.kind == "train":
                result = train_and_evaluate(trial, cfg, self.spec, lambda: self.evaluator, params, self.channel)
            else:
                task = self.task  # a missing or wrong checkpoint stops the sweep (it is not this grid point's)
                try:
                    with interrupts.released():  # the long part: Ctrl-C / SIGTERM act at once (see study.py)
                        result = self.evaluator.evaluate(task, cfg)
                except UserError as exc:  # a point the data cannot serve, e.g. data.num_lr above the scenes' LRs
                    self._prune(trial, str(exc))
            summary = result.summary
            trial.set_user_attr("eval", summary)
            trial.set_user_attr("scenes", scene_columns(result.rows))
            values = [read_metric(summary, objective.metric) for objective in self.spec.objectives]
        except optuna.TrialPruned:
            raise
        except Exception as exc:  # Optuna records a FAIL without its reason: keep it, one line, for the summary
            trial.set_user_attr(FAIL_REASON, one_line_reason(exc))
            raise
        log.info("trial %d: %s", trial.number,
                 ", ".join(f"{o.metric}={v:.4g}" for o, v in zip(self.spec.objectives, values, strict=True)))
        return values[0] if len(values) == 1 else values

    @staticmethod
    def _prune(trial: optuna.Trial, reason: str) -> None:
        log.warning("trial %d pruned: %s", trial.number, reason)
        trial.set_user_attr(PRUNED_REASON, reason)
        raise optuna.TrialPruned(reason)


def scene_columns(rows: list[dict[str, Any]]) -> dict[str, list]:
    """The per-scene values the report pairs trials by (reports/paired.py), kept small: the scene keys,
    seeds and the per-image headline metrics, one list each (docs/ARCHITECTURE.md, "Sweep trials")."""
    names = [m for m in HEADLINE_METRICS if METRICS[m].per_image and any(m in row for row in rows)]
    return {name: [row.get(name) for row in rows] for name in ["key", "seed", *names]}


def train_and_evaluate(trial: optuna.Trial, cfg: DictConfig, spec: DictConfig, evaluator: Callable[[], Evaluator],
                       params: dict[str, Any] | None = None, channel=None) -> EvalResult:
    """Fit `cfg`, then evaluate the run's best checkpoint. With a DDP `channel` (rank 0 of a DDP
    training sweep) every rank trains the trial (`ddp_trials.lead_trial`)."""
    fitted = fit_trial(trial, cfg, spec) if channel is None else lead_trial(channel, trial, cfg, spec, params)
    fitted.pruning.check_pruned()  # under DDP the prune decision arrives through the storage
    trial.set_user_attr("run", str(fitted.run.path))
    with interrupts.released():
        return evaluator().evaluate(load_sampler(fitted.run.path), cfg)
