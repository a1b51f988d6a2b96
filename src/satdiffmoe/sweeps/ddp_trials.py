"""DDP training sweeps: every rank trains the trial that rank 0 took from Optuna.

Under torchrun (launched and checked by distributed.py):

* rank 0 runs the study exactly as a single-process sweep does (sampler, pruner, heartbeats,
  retries, evaluation, W&B). Just before it trains a trial it broadcasts the trial's id, number and
  parameters (`lead_trial`);
* every other rank waits for that message, builds the trial's config from those parameters with
  the same code (trial_config.py), and joins the Lightning `fit`, so DDP trains one config on every
  rank (`follow_trials`);
* after each fit the ranks gather (parameters, config hash, weight checksum) on rank 0, which fails
  a trial whose ranks disagree and keeps the list in the trial's `ranks` user attribute.

Why not optuna_integration.TorchDistributedTrial: it makes every trial call a collective, yet
Lightning's pruning callback (PyTorchLightningPruningCallback) needs a storage-backed trial on every
rank. The other ranks therefore attach to rank 0's trial through the shared storage
(`optuna.trial.Trial(study, trial_id)`), which is also why a DDP sweep needs an RDB storage.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig

from .distributed import STOP, TrialChannel, check_ranks_agree, rank_report
from .storage import open_storage
from .training_trial import FittedTrial, fit_trial
from .trial_config import base_config, trial_config

log = logging.getLogger(__name__)


def lead_trial(channel: TrialChannel, trial: optuna.Trial, cfg: DictConfig, spec: DictConfig,
               params: dict[str, Any]) -> FittedTrial:
    """Rank 0: tell the other ranks to train this trial, train it too, then check they all agree."""
    channel.announce({"trial_id": trial._trial_id, "number": trial.number, "params": params})
    fitted, error = None, None
    try:
        fitted = fit_trial(trial, cfg, spec)
    except BaseException as exc:
        error = exc
        raise
    finally:  # every rank gathers after every fit, failed or not, so the ranks stay in step
        reports = channel.gather(rank_report(params, cfg, fitted and fitted.task, error))
    trial.set_user_attr("ranks", reports)
    check_ranks_agree(reports)
    return fitted


def follow_trials(spec: DictConfig, sweep_dir: Path, storage_url: str | None, channel: TrialChannel) -> int:
    """A rank > 0: train every trial rank 0 announces until it says stop; returns the exit code."""
    base_cfg = base_config(spec)
    study: optuna.Study | None = None
    trained = 0
    while (message := channel.receive()) is not STOP:
        if study is None:  # rank 0 created it before its first announcement
            # RandomSampler: attaching to a trial calls sampler.before_trial, which must not touch it.
            study = optuna.load_study(study_name=spec.study, storage=open_storage(storage_url, sweep_dir, spec.heartbeat),
                                      sampler=optuna.samplers.RandomSampler())
        trial = optuna.trial.Trial(study, message["trial_id"])
        cfg = trial_config(spec, base_cfg, sweep_dir, message["number"], message["params"])
        log.info("rank %d: training trial %d (%s)", channel.rank, message["number"],
                 ", ".join(f"{k}={v}" for k, v in message["params"].items()))
        task, error = None, None
        try:
            task = fit_trial(trial, cfg, spec).task
        except Exception as exc:  # noqa: BLE001 - rank 0 records the failure; stay in step for the next trial
            error = exc
            log.warning("rank %d: trial %d failed: %s", channel.rank, message["number"], exc)
        channel.gather(rank_report(message["params"], cfg, task, error))
        trained += 1
    log.info("rank %d: sweep finished after %d trial(s)", channel.rank, trained)
    return 0
