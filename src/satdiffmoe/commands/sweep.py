"""`satdiffmoe sweep sweeps/X.yaml [--n-trials N] [--storage URL] [--workers K] [--out DIR] [key=value ...]`

Creates (or resumes) the study, runs K local workers on it (spawned processes; K = 1 runs in this
process), then writes trials.csv, best.json and the plots, and logs the W&B summary run. A training
sweep on several devices runs under torchrun, every rank training rank 0's trials (sweeps/ddp_trials.py).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from ..interrupts import keeping
from . import add_command

if TYPE_CHECKING:
    from omegaconf import DictConfig

log = logging.getLogger(__name__)
# numbers of an evaluation summary (evaluation/evaluator.py) that an objective may name besides metrics
SUMMARY_NUMBERS = ("seconds_per_image", "wall_time_s", "nfe", "num_scenes", "params.trainable", "params.total")
HELP = "run or resume an Optuna study from sweeps/*.yaml"


def register(subparsers) -> None:
    p = add_command(subparsers, "sweep", HELP)
    p.add_argument("sweep", help="sweep definition (sweeps/*.yaml)")
    p.add_argument("--n-trials", type=int, default=None, help="trials to run now (default: the sweep's n_trials, or the whole grid)")
    p.add_argument("--storage", default=None, help="Optuna storage: sqlite:///f.db, postgresql://..., or journal:path.log")
    p.add_argument("--workers", type=int, default=1, help="local worker processes sharing the storage")
    p.add_argument("--out", default=None, help="sweep folder (default runs/sweeps/<study>)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides of the sweep file, e.g. ckpt=...")


def run(args) -> int:
    from omegaconf import OmegaConf

    from ..sweeps.ddp_trials import follow_trials
    from ..sweeps.distributed import (
        TrialChannel,
        check_distributed_sweep,
        processes_per_node,
        relaunch_under_torchrun,
        torchrun_world,
    )
    from ..sweeps.results import write_results
    from ..sweeps.spec import load_sweep
    from ..sweeps.storage import check_storage_url
    from ..sweeps.study import open_study, requeue_failed, run_worker, split_budget
    from ..sweeps.wandb_tracking import TrialRunLogger

    spec = load_sweep(args.sweep, args.overrides)
    sweep_dir = Path(args.out or spec.out or Path("runs") / "sweeps" / spec.study)
    storage_url = args.storage or spec.storage
    check_storage_url(storage_url)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    if args.n_trials is not None and args.n_trials < 1:
        raise UserError(f"--n-trials must be >= 1, got {args.n_trials}")
    cfg = _check_inputs(spec)
    from ..training.loggers import wandb_mode

    wandb_mode(spec.wandb.mode)  # a bad WANDB_MODE is refused before the study starts
    rank, world = torchrun_world()
    if world > 1 and spec.kind != "train":
        raise UserError(f"sweep '{spec.study}' evaluates a checkpoint: it does not run under torchrun; "
                        "use --workers K for K local worker processes")
    channel = None
    if spec.kind == "train":
        processes = processes_per_node(cfg.train) * cfg.train.num_nodes
        if processes > 1 or world > 1:
            check_distributed_sweep(cfg, storage_url, args.workers, processes, world)
            if world == 1:
                return relaunch_under_torchrun(processes, args.argv)
            channel = TrialChannel(cfg.train)
            if rank != 0:
                return follow_trials(spec, sweep_dir, storage_url, channel)
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create sweep folder {sweep_dir}: {exc.strerror}; choose another --out") from None

    # Created here, before any worker starts, so workers only ever load it.
    study = open_study(spec, sweep_dir, storage_url)
    _write_text(sweep_dir / "sweep.yaml", OmegaConf.to_yaml(spec))  # what this invocation ran (once accepted)
    requeue_failed(study, spec.heartbeat.max_retry)
    log.info("study '%s' in %s: %d trial(s) so far; %d worker(s)", spec.study, sweep_dir,
             len(study.get_trials(deepcopy=False)), args.workers)

    budgets = split_budget(args.n_trials, args.workers)
    with keeping(lambda: _interrupted_line(spec, sweep_dir, storage_url)):
        if args.workers == 1:
            run_worker(spec, sweep_dir, storage_url, budgets[0], channel)
        else:
            _run_processes(spec, sweep_dir, storage_url, budgets, bool(getattr(args, "verbose", False)))

    study = open_study(spec, sweep_dir, storage_url)
    plots = write_results(study, sweep_dir)
    TrialRunLogger(spec, sweep_dir).log_study(study, plots)
    return _summarise(study, sweep_dir)


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}; choose a writable --out") from None


def _check_inputs(spec) -> DictConfig:
    """Fail before the study starts, not once per trial: the base config loads, the checkpoint exists.
    Returns the base config."""
    from ..sweeps.trial_config import base_config

    cfg = base_config(spec)
    known = [*cfg.eval.metrics, *SUMMARY_NUMBERS]
    for objective in spec.objectives:  # otherwise every trial computes, then fails on reading it
        if objective.metric not in known:
            raise UserError(f"objective metric '{objective.metric}' of sweep '{spec.study}' is not computed: "
                            f"choose one of eval.metrics ({', '.join(cfg.eval.metrics)}) or "
                            f"{', '.join(SUMMARY_NUMBERS)}")
    _check_choice_types(spec, cfg)
    if spec.kind == "evaluate":
        if not cfg.ckpt:
            raise UserError(f"sweep '{spec.study}' evaluates a checkpoint but none is given; "
                            "pass ckpt=<run folder or .ckpt> (or set ckpt: in the sweep file)")
        from ..training.checkpoints import resolve_checkpoint

        resolve_checkpoint(cfg.ckpt)
    return cfg


def _check_choice_types(spec, cfg) -> None:
    """A categorical choice the config key cannot hold (`sampler.nfe: [ten]`) would prune every trial
    that draws it and still exit 0: refuse it before the first trial. (Values of the right type that
    clash with another setting stay per-trial prunes.)"""
    import copy

    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from ..sweeps.spec import to_config_value

    trial = copy.deepcopy(cfg)
    OmegaConf.set_readonly(trial, False)
    for key, param in spec.params.items():
        for value in param.choices or []:
            try:
                OmegaConf.update(trial, str(key), to_config_value(value), merge=True)
            except OmegaConfBaseException as exc:
                raise UserError(f"params.{key} of sweep '{spec.study}' has the choice {value!r}, which {key} cannot "
                                f"hold ({str(exc).splitlines()[0]}); fix the choice") from None


def _run_processes(spec, sweep_dir: Path, storage_url, budgets, verbose: bool) -> None:
    from omegaconf import OmegaConf

    from .. import threads
    from ..sweeps.study import worker_process

    per_worker = threads.per_worker(len(budgets))  # the free CPUs shared out, measured once before they start
    # spawn, not fork: each worker builds its own torch state, storage connections and W&B service.
    context = multiprocessing.get_context("spawn")
    container = OmegaConf.to_container(spec, resolve=True)
    workers = [context.Process(target=worker_process, name=f"sweep-worker-{i}",
                               args=(container, str(sweep_dir), storage_url, budget, verbose, per_worker))
               for i, budget in enumerate(budgets)]
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            worker.join()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM here: the workers fail their running trials, then stop
        for worker in workers:
            if worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)
        for worker in workers:
            worker.join()
        raise
    crashed = [w.name for w in workers if w.exitcode != 0]
    if crashed:
        log.warning("worker(s) %s exited abnormally; their running trials are retried on the next run",
                    ", ".join(crashed))


def _interrupted_line(spec, sweep_dir: Path, storage_url) -> str:
    """What an interrupted sweep kept: Optuna recorded the running trial as FAIL, which the next run
    queues again (study.requeue_failed); finished trials stay in the study."""
    from optuna.trial import TrialState

    from ..sweeps.spec import grid_size
    from ..sweeps.study import open_study

    again = "re-run the same command to continue (the interrupted trial runs again)"
    try:
        trials = open_study(spec, sweep_dir, storage_url).get_trials(deepcopy=False)
    except Exception:  # the storage itself may be what was interrupted
        return f"the study in {sweep_dir} keeps its finished trials; {again}"
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    total = grid_size(spec) if spec.sampler.name == "grid" and spec.n_trials is None else spec.n_trials
    return f"after {done} of {total} trials; the study in {sweep_dir} keeps them, {again}"


def _summarise(study, sweep_dir: Path) -> int:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): sum(t.state == state for t in trials) for state in TrialState}
    log.info("study '%s': %s", study.study_name, ", ".join(f"{n} {k}" for k, n in counts.items() if n))
    log.info("results: %s, %s", sweep_dir / "trials.csv", sweep_dir / "best.json")
    if trials and not counts["complete"] and counts["fail"]:
        reason = next((t.user_attrs.get("fail_reason") or t.system_attrs.get("fail_reason") or "not recorded"
                       for t in trials if t.state == TrialState.FAIL), "?")
        raise UserError(f"every trial of study '{study.study_name}' failed; first reason: {str(reason).splitlines()[0]}")
    return 0
