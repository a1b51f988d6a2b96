"""Training sweeps on several devices: launching under torchrun and the ranks' control channel.

    satdiffmoe sweep sweeps/train_lr.yaml   # its base config sets train.devices=2 (one node)

A training sweep whose config asks for more than one process on one node relaunches itself under
`torch.distributed.run` (torchrun), one process per device; on several nodes, start torchrun on
every node yourself (docs/sweeps.md). `check_distributed_sweep` refuses what such a sweep cannot run.
Which trial each rank trains, and when, is ddp_trials.py; this module only carries the messages.

The control messages use their own gloo group with a long timeout: the other ranks wait there while
rank 0 evaluates a trial or waits for other workers, which may outlast a DDP collective's timeout.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig, ListConfig, OmegaConf

from .. import interrupts
from ..errors import UserError
from ..training import ddp_failures
from .storage import JOURNAL_PREFIX

log = logging.getLogger(__name__)

CONTROL_TIMEOUT = timedelta(days=7)  # rank 0 may evaluate, or wait for other workers, for a long time
STOP = None  # the message that ends the other ranks' loop


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
    process = subprocess.Popen(command)
    try:
        return process.wait()
    except KeyboardInterrupt:  # pass Ctrl-C / SIGTERM on (torchrun stops its ranks), never SIGKILL torchrun
        process.send_signal(interrupts.received() or signal.SIGINT)
        process.wait()
        raise


class TrialChannel:
    """Rank 0 -> other ranks: "train this trial" / "stop"; other ranks -> rank 0: what each trained."""

    def __init__(self, train: DictConfig):
        if not dist.is_initialized():
            # The backend Lightning would choose, and the collective timeout it would set
            # (train.ddp_timeout_s): Lightning reuses an initialised default group as it is, so a rank
            # left waiting by a failed peer would otherwise wait torch's default 30 minutes.
            gpu = uses_cuda(train.accelerator)
            if gpu:
                torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
            dist.init_process_group("nccl" if gpu else "gloo", timeout=timedelta(seconds=ddp_failures.timeout_s(train)))
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
        self.announce(STOP)


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
