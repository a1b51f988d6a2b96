"""The study: created once (or loaded to resume), then worked on by one or more worker processes.

Resuming never repeats finished work. A grid study gives trial number k the grid point k
(GridSampler), so finished points are skipped; other samplers count COMPLETE and PRUNED trials
toward `n_trials`. A trial whose worker died is failed by the heartbeat check and queued again with
its parameters (`storage.py`); a trial that failed with an error is queued again once per rerun, up
to `heartbeat.max_retry` times in all.

Every worker loops "start a trial while there is one to start". When only other workers' trials are
running it keeps polling their heartbeats until they finish or go stale, so the last worker standing
takes over a dead worker's trial instead of leaving it behind.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from .. import interrupts
from ..errors import UserError
from .objective import TrialObjective
from .spec import grid_size, search_space
from .storage import open_storage
from .wandb_tracking import TrialRunLogger

log = logging.getLogger(__name__)

_DONE = (TrialState.COMPLETE, TrialState.PRUNED)


def build_sampler(spec: DictConfig) -> optuna.samplers.BaseSampler:
    s = spec.sampler
    if s.name == "grid":
        return optuna.samplers.GridSampler(search_space(spec), seed=s.seed)
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=s.seed)
    # group=True lets multivariate TPE model conditional (`when:`) params per sub-space.
    return optuna.samplers.TPESampler(seed=s.seed, n_startup_trials=s.n_startup_trials,
                                      multivariate=True, group=True)


def build_pruner(spec: DictConfig) -> optuna.pruners.BasePruner:
    p = spec.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    if p.name == "threshold":  # e.g. stop trials whose val/psnr is still below 15 dB after warm-up
        return optuna.pruners.ThresholdPruner(lower=p.lower, upper=p.upper, n_warmup_steps=p.n_warmup_steps)
    return optuna.pruners.NopPruner()


def open_study(spec: DictConfig, sweep_dir: Path, storage_url: str | None) -> optuna.Study:
    """Create the study, or load it when it exists (re-running the command resumes)."""
    storage = open_storage(storage_url, sweep_dir, spec.heartbeat)
    directions = [o.direction for o in spec.objectives]
    study = optuna.create_study(study_name=spec.study, storage=storage, sampler=build_sampler(spec),
                                pruner=build_pruner(spec), directions=directions, load_if_exists=True)
    if [d.name.lower() for d in study.directions] != directions:
        raise UserError(f"study '{spec.study}' already exists with directions "
                        f"{[d.name.lower() for d in study.directions]}, not {directions}; use another study name")
    where = storage_url or str(sweep_dir)
    _check_search_space(study, spec, where)
    metric_names = [o.metric for o in spec.objectives]
    if study.metric_names is None:
        study.set_metric_names(metric_names)
    elif study.metric_names != metric_names:  # renaming would file the old values under the new metric
        raise UserError(f"study '{spec.study}' in {where} measured {', '.join(study.metric_names)}, not "
                        f"{', '.join(metric_names)}; {NEW_STUDY}")
    _check_trial_meaning(study, spec, where)
    return study


NEW_STUDY = "give the changed sweep a new study name (study=<new name>) or a new --out / --storage"
# What each trial of a study means besides its parameters: a resume that changes one of these would
# count trials run with the old value as results of the new one. (n_trials, the sampler's seed, the
# pruner, heartbeats, storage and W&B only change which trials run, or how, and may change.)
MEANING_KEYS = ("kind", "config", "ckpt", "base_overrides", "objectives", "seeds", "prune_monitor")


def _trial_meaning(spec: DictConfig) -> dict:
    return {key: OmegaConf.to_container(spec[key], resolve=True) if OmegaConf.is_config(spec[key]) else spec[key]
            for key in MEANING_KEYS if key != "prune_monitor" or spec.kind == "train"}


def _check_trial_meaning(study: optuna.Study, spec: DictConfig, where: str) -> None:
    meaning = _trial_meaning(spec)
    stored = study.user_attrs.get("trial_meaning")
    if stored is None:
        study.set_user_attr("trial_meaning", meaning)
        return
    for key in MEANING_KEYS:
        if stored.get(key) != meaning.get(key):
            raise UserError(f"study '{spec.study}' in {where} ran its trials with {key}={_show(stored.get(key))}, "
                            f"not {key}={_show(meaning.get(key))}; {NEW_STUDY}")


def _show(value) -> str:
    return json.dumps(value, default=str)


def _check_search_space(study: optuna.Study, spec: DictConfig, where: str) -> None:
    """A study keeps the search space it was created with. A grid study resumed with an edited grid
    reported its old trials as the whole study and never ran the new points, so refuse instead."""
    space = json.dumps({"sampler": spec.sampler.name, "params": OmegaConf.to_container(spec.params, resolve=True)},
                       sort_keys=True, default=str)
    stored = study.user_attrs.get("search_space")
    if stored is None:
        study.set_user_attr("search_space", space)
    elif stored != space:
        raise UserError(f"study '{spec.study}' in {where} was created with another search space "
                        f"({_describe(stored)}), not this one ({_describe(space)}); {NEW_STUDY}")


def _describe(space: str) -> str:
    params = json.loads(space)["params"]
    return "; ".join(f"{k}: {v.get('choices') or [v.get('low'), v.get('high')]}" for k, v in params.items())


def requeue_failed(study: optuna.Study, max_retry: int) -> int:
    """Queue again every failed trial that nothing has retried yet (stale ones are queued on detection)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}
    retry = RetryHeartbeatStaleTrialCallback(max_retry=max_retry)
    queued = 0
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.number not in retried:
            before = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            retry(study, trial)
            queued += len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,))) - before
    if queued:
        log.info("queued %d failed trial(s) again", queued)
    return queued


def work_left(study: optuna.Study, spec: DictConfig) -> tuple[bool, bool]:
    """(a trial can be started now, trials of other workers are still running)."""
    trials = study.get_trials(deepcopy=False)
    running = any(t.state == TrialState.RUNNING for t in trials)
    if any(t.state == TrialState.WAITING for t in trials):
        return True, running
    if spec.sampler.name == "grid":
        taken = {t.system_attrs.get("grid_id") for t in trials}
        return len(set(range(grid_size(spec))) - taken) > 0, running
    done = sum(t.state in _DONE for t in trials)
    failed = sum(t.state == TrialState.FAIL for t in trials)
    started = done + sum(t.state == TrialState.RUNNING for t in trials)
    # Every trial failing would otherwise loop for ever: give up after n_trials failures.
    return started < spec.n_trials and failed < spec.n_trials, running


def run_worker(spec: DictConfig, sweep_dir: Path, storage_url: str | None, budget: int | None,
               channel=None) -> int:
    """Run trials until the study is done or `budget` trials were started here; returns trials run.

    `channel` (rank 0 of a DDP training sweep) tells the other ranks each trial to train, and to
    stop when the study is done. (If this process dies instead, torchrun ends the other ranks.)
    """
    try:
        ran = _work(spec, sweep_dir, storage_url, budget, channel)
    except KeyboardInterrupt:
        fail_own_running(open_study(spec, sweep_dir, storage_url))
        raise
    if channel is not None:
        channel.stop()
    return ran


def _work(spec: DictConfig, sweep_dir: Path, storage_url: str | None, budget: int | None, channel) -> int:
    study = open_study(spec, sweep_dir, storage_url)
    objective = TrialObjective(spec, sweep_dir, channel)
    callbacks = [TrialRunLogger(spec, sweep_dir)]
    heartbeat = spec.heartbeat.interval
    ran, waiting = 0, False
    while budget is None or ran < budget:
        can_start, others_running = work_left(study, spec)
        if not can_start:
            if not (others_running and heartbeat):
                break
            if not waiting:
                log.info("nothing left to start; waiting for running trials to finish or go stale "
                         "(a dead worker's trial is taken over after heartbeat.grace)")
            waiting = True
            time.sleep(heartbeat)
            optuna.storages.fail_stale_trials(study)
            continue
        # `catch`: a crashing trial is recorded as FAIL (with its reason) and the study goes on. Ctrl-C /
        # SIGTERM are held over every write to the storage, Optuna's and the objective's: one landing
        # inside a write left the trial RUNNING (between `ask` and the objective), or its database
        # session half-committed, so that Optuna's own FAIL write then raised (seen on a loaded
        # machine). They take effect inside the objective's long parts (`interrupts.released()`),
        # where Optuna records the trial as FAIL.
        with interrupts.held():
            study.optimize(objective, n_trials=1, callbacks=callbacks, catch=(Exception,), gc_after_trial=False)
        ran, waiting = ran + 1, False
    return ran


class _NoInterruptTraceback(logging.Filter):
    """Optuna logs a trial stopped by Ctrl-C / SIGTERM with its traceback; the CLI's one line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and record.exc_info[0] and issubclass(record.exc_info[0], KeyboardInterrupt))


_OPTUNA_TRIAL_LOG = logging.getLogger("optuna.study._optimize")  # where Optuna reports a failed trial
if not any(isinstance(f, _NoInterruptTraceback) for f in _OPTUNA_TRIAL_LOG.filters):
    _OPTUNA_TRIAL_LOG.addFilter(_NoInterruptTraceback())


def fail_own_running(study: optuna.Study) -> None:
    """Fail this process's RUNNING trials after Ctrl-C / SIGTERM, so the next run queues them again at
    once. Optuna fails a trial interrupted inside the objective itself; this covers an interruption
    in its bookkeeping around it (ask, tell), which would otherwise wait for the heartbeat check."""
    me = f"{socket.gethostname()}:{os.getpid()}"  # what the objective records as the trial's "worker"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") == me:
            study.tell(trial.number, state=TrialState.FAIL)


def worker_process(spec_container: dict, sweep_dir: str, storage_url: str | None, budget: int | None,
                   verbose: bool, threads: int = 1) -> None:
    """Entry point of a spawned worker: rebuild the spec, then work on the shared study."""
    import torch
    from omegaconf import OmegaConf

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(threads)  # the parent's share of the free CPUs (satdiffmoe/threads.py)
    with interrupts.handling():  # SIGTERM from the parent (or Ctrl-C): Optuna fails the running trial
        try:
            run_worker(OmegaConf.create(spec_container), Path(sweep_dir), storage_url, budget)
        except KeyboardInterrupt:  # the parent prints the one line; multiprocessing would print a traceback
            sys.exit(interrupts.exit_status())


def split_budget(total: int | None, workers: int) -> list[int | None]:
    if total is None:
        return [None] * workers
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
