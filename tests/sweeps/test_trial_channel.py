"""The process group a multi-device training sweep creates itself (TrialChannel) carries
`train.ddp_timeout_s`: Lightning reuses that group as it is, so with torch's default a rank left
waiting by a failed peer would wait 30 minutes. (A one-process gloo world; the 2-process sweep is
tests/reliability/test_ddp_sweep.py.)"""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
from omegaconf import OmegaConf

from satdiffmoe.sweeps.distributed import CONTROL_TIMEOUT, TrialChannel


@pytest.fixture
def one_process_world(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def gloo_timeout(group) -> timedelta:
    return group._get_backend(torch.device("cpu")).options._timeout


def test_the_default_group_times_out_after_train_ddp_timeout_s(one_process_world):
    channel = TrialChannel(OmegaConf.create({"accelerator": "cpu", "ddp_timeout_s": 42.0}))
    assert gloo_timeout(dist.group.WORLD) == timedelta(seconds=42)
    assert gloo_timeout(channel.group) == CONTROL_TIMEOUT  # the control messages keep their long wait
