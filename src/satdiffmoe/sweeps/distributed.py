"""Training sweeps on several devices: every DDP rank trains the trial that rank 0 took from Optuna.

    satdiffmoe sweep sweeps/train_lr.yaml   # its base config sets train.devices=2 (one node)

A training sweep whose config asks for more than one process on one node relaunches itself under
`torch.distributed.run` (torchrun), one process per device; on several nodes, start torchrun on
every node yourself (docs/sweeps.md). Under torchrun:

* rank 0 runs the study exactly as a single-process sweep does (sampler, pruner, heartbeats,
  retries, evaluation, W&B). Just before it trains a trial it broadcasts the trial's id, number and
  parameters;
* every other rank waits for that message, builds the trial's config from those parameters with
  the same code, and joins the Lightning `fit`, so DDP trains one config on every rank;
* after each fit the ranks gather (parameters, config hash, weight checksum) on rank 0, which fails
  a trial whose ranks disagree and keeps the list in the trial's `ranks` user attribute.

Why not optuna_integration.TorchDistributedTrial: it makes every trial call a collective, yet
Lightning's pruning callback (PyTorchLightningPruningCallback) needs a storage-backed trial on every
rank. The other ranks therefore attach to rank 0's trial through the shared storage
(`optuna.trial.Trial(study, trial_id)`), which is also why a DDP sweep needs an RDB storage.

The control messages use their own gloo group with a long timeout: the other ranks wait there while
rank 0 evaluates a trial or waits for other workers, which may outlast a DDP collective's timeout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.distributed as dist
from omegaconf import DictConfig, ListConfig, OmegaConf

from ..errors import UserError
from .storage import JOURNAL_PREFIX, open_storage

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = timedelta(days=7)  # rank 0 may evaluate, or wait for other workers, for a long time
_STOP = None  # the message that ends the other ranks' loop


def torchrun_world() -> tuple[int, int]:
    """(global rank, world size) from torchrun's environment; (0, 1) outside torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def uses_cuda(accelerator: str) -> bool:
    """Whether Lightning runs `train.accelerator` on CUDA devices here."""
    return accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()


def processes_per_node(train: DictConfig) -> int:
    """How many processes Lightning starts on one node for `train.devices` (parsed by Lightning itself)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.accelerators import CPUAccelerator, CUDAAccelerator

    accelerator = CUDAAccelerator if uses_cuda(train.accelerator) else CPUAccelerator
    devices = list(train.devices) if isinstance(train.devices, ListConfig) else train.devices
    if devices == "auto":  # as Lightning's accelerator connector does
        devices = accelerator.auto_device_count()
    try:
        parsed = accelerator.parse_devices(devices)
    except (MisconfigurationException, TypeError, ValueError) as exc:  # CPU raises TypeError
        raise UserError(f"train.devices={devices!r}: {' '.join(str(exc).split())}") from None
    return len(parsed) if isinstance(parsed, list) else int(parsed or 0)


def check_distributed_sweep(cfg: DictConfig, storage_url: str | None, workers: int, processes: int,
                            world: int) -> None:
    """Refuse the combinations a DDP training sweep cannot run, each with the fix.

    `processes` is what the config asks for (devices × nodes), `world` what torchrun started (1 = none).
    """
    if workers > 1:
        raise UserError(f"--workers {workers} with train.devices > 1: each trial already uses every device; "
                        "drop --workers (start further sweeps on other machines on the same storage instead)")
    if storage_url and storage_url.startswith(JOURNAL_PREFIX):
        raise UserError("a DDP training sweep needs an RDB storage (the default SQLite file or a database URL): "
                        "Lightning's pruning callback does not support journal files under DDP")
    strategy = str(cfg.train.strategy)
    if any(word in strategy for word in ("spawn", "fork", "notebook")):
        raise UserError(f"train.strategy={strategy} starts its own processes; a DDP sweep runs under torchrun, "
                        "use train.strategy=ddp (or auto)")
    if world == 1 and cfg.train.num_nodes > 1:
        raise UserError(f"train.num_nodes={cfg.train.num_nodes}: start this command under torchrun on every node "
                        "(docs/sweeps.md, 'Training trials under DDP')")
    if world > 1 and world != processes:
        raise UserError(f"torchrun started {world} processes but train.devices × train.num_nodes = {processes}; "
                        "make them equal")


def relaunch_under_torchrun(nproc: int, argv: list[str]) -> int:
    """Run this same `satdiffmoe` command again under torchrun with `nproc` processes on this node."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "satdiffmoe.cli", *argv]
    log.info("training sweep on %d devices: relaunching under torchrun (%s)", nproc, " ".join(command[1:6]))
    return subprocess.run(command, check=False).returncode


class TrialChannel:
    """Rank 0 -> other ranks: "train this trial" / "stop"; other ranks -> rank 0: what each trained."""

    def __init__(self, accelerator: str):
        if not dist.is_initialized():
            # The backend Lightning would choose; Lightning reuses an initialised default group.
            gpu = uses_cuda(accelerator)
            if gpu:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if gpu else "gloo")
        self.rank = dist.get_rank()
        self.group = dist.new_group(backend="gloo", timeout=CONTROL_TIMEOUT)

    def announce(self, message: dict[str, Any] | None) -> None:
        dist.broadcast_object_list([message], src=0, group=self.group)

    def receive(self) -> dict[str, Any] | None:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def gather(self, report: dict[str, Any]) -> list[dict[str, Any]] | None:
        """Every rank's report on rank 0 (None elsewhere)."""
        reports: list[Any] | None = [None] * dist.get_world_size(self.group) if self.rank == 0 else None
        dist.gather_object(report, reports, dst=0, group=self.group)
        return reports

    def stop(self) -> None:
        self.announce(_STOP)


def rank_report(params: dict[str, Any], cfg: DictConfig, task=None, error: BaseException | None = None) -> dict:
    """What this rank trained: the parameters, a hash of the resolved config, a weight checksum."""
    report: dict[str, Any] = {"rank": dist.get_rank(), "params": params,
                              "config_sha1": hashlib.sha1(OmegaConf.to_yaml(cfg, resolve=True).encode()).hexdigest()}
    if task is not None:
        with torch.no_grad():
            report["weights_sum"] = float(sum(p.detach().double().sum().item() for p in task.parameters()))
    if error is not None:
        report["error"] = f"{type(error).__name__}: {error}"
    return report


def check_ranks_agree(reports: list[dict[str, Any]]) -> None:
    """Rank 0's check that every rank trained the same trial, without error; raises (failing the trial) otherwise."""
    failed = [r for r in reports if "error" in r]
    if failed:
        raise RuntimeError(f"rank {failed[0]['rank']} failed to train this trial: {failed[0]['error']}")
    first = reports[0]
    for other in reports[1:]:
        for key in ("params", "config_sha1"):
            if other[key] != first[key]:
                raise RuntimeError(f"rank {other['rank']} trained {key}={other[key]!r}, rank 0 {first[key]!r}")


def lead_trial(channel: TrialChannel, trial: optuna.Trial, cfg: DictConfig, spec: DictConfig,
               params: dict[str, Any]):
    """Rank 0: tell the other ranks to train this trial, train it too, then check they all agree."""
    from .training_trial import fit_trial

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
    from .objective import TrialObjective
    from .training_trial import fit_trial

    objective = TrialObjective(spec, sweep_dir)
    study: optuna.Study | None = None
    trained = 0
    while (message := channel.receive()) is not _STOP:
        if study is None:  # rank 0 created it before its first announcement
            # RandomSampler: attaching to a trial calls sampler.before_trial, which must not touch it.
            study = optuna.load_study(study_name=spec.study, storage=open_storage(storage_url, sweep_dir, spec.heartbeat),
                                      sampler=optuna.samplers.RandomSampler())
        trial = optuna.trial.Trial(study, message["trial_id"])
        cfg = objective.trial_config(message["number"], message["params"])
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
