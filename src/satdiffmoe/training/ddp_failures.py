"""A DDP run in which one rank dies or hangs stops every rank with one line, instead of waiting.

Measured with 2 gloo ranks on CPU (tests/reliability/test_ddp_hang.py):

* A rank that dies fails the others within seconds: gloo sees the closed connection.
* A rank that stays alive but never enters the next collective (stuck on I/O, a deadlock, a caught
  error) leaves the others waiting in that collective (the gradient bucket broadcast or all-reduce)
  for the process group's timeout: torch's default is 30 minutes. `train.ddp_timeout_s` sets it
  (Lightning's `DDPStrategy(timeout=...)`, per collective), and the waiting rank then raises.
* That alone did not end the run: Lightning kills the ranks it launched (local ranks 1..N-1, children
  of rank 0) only on Ctrl-C, so the stuck rank lived on, and whatever waited for the job's output
  (a terminal, a test's pipes, a scheduler) waited with it; an earlier attempt read this as "rank 0
  hangs past 120 s with a 20 s timeout". `StopLaunchedRanks` kills them (SIGKILL: a stuck rank may
  never run a Python signal handler) when the fit fails on the launching rank.

The same timeout bounds how long rank 0 waits for the other ranks to start (the rendezvous): on a
machine loaded to 2x, rank 1 needed over 20 s to start; the 300 s default leaves room for both.
Training sweeps on several devices create the process group themselves (sweeps/distributed.py,
TrialChannel), with this same timeout, and Lightning reuses that group.
"""

from __future__ import annotations

import signal
from datetime import timedelta

import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy
from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher
from omegaconf import DictConfig, ListConfig

# what gloo and NCCL put in the errors of a collective that timed out or lost a peer
COLLECTIVE_ERRORS = ("Timed out", "timed out", "Connection closed by peer", "Connection reset by peer", "gloo",
                     "NCCL")


DEFAULT_TIMEOUT_S = 300.0  # config/schema.py: train.ddp_timeout_s


def timeout_s(t: DictConfig) -> float:
    return float(t.get("ddp_timeout_s", DEFAULT_TIMEOUT_S))


def _processes_per_node(t: DictConfig) -> int:
    devices = t.devices
    if isinstance(devices, (list, tuple, ListConfig)):
        return len(devices)
    gpus = torch.cuda.device_count() if t.accelerator in ("auto", "gpu", "cuda") else 0
    if str(devices) == "auto" or str(devices) == "-1":
        return max(gpus, 1)
    try:
        return int(devices)
    except (TypeError, ValueError):  # "0,1" and the like
        return len(str(devices).strip(",").split(","))


def strategy(t: DictConfig):
    """`train.strategy` for the Trainer: DDP ("ddp", or "auto" over several processes, which Lightning
    makes DDP) with the collective timeout `train.ddp_timeout_s`; anything else unchanged."""
    several = _processes_per_node(t) * t.num_nodes > 1
    if t.strategy == "ddp" or (t.strategy == "auto" and several and t.accelerator != "mps"):
        return DDPStrategy(timeout=timedelta(seconds=timeout_s(t)))
    return t.strategy


def is_collective_failure(exc: BaseException) -> bool:
    distributed_error = getattr(torch.distributed, "DistError", ())
    return isinstance(exc, distributed_error) or (
        isinstance(exc, RuntimeError) and any(word in str(exc) for word in COLLECTIVE_ERRORS))


def describe(exc: BaseException, t: DictConfig, rank: int) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return (f"DDP rank {rank} stopped: another rank died, or did not join a collective within train.ddp_timeout_s="
            f"{timeout_s(t):g} s ({first}); the ranks it started are stopped too")


class StopLaunchedRanks(Callback):
    """On a failed fit, kill the ranks this process launched, so a stuck one cannot outlive the run."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        launcher = trainer.strategy.launcher
        if isinstance(launcher, _SubprocessScriptLauncher) and getattr(launcher, "procs", None):
            launcher.kill(signal.SIGKILL)
