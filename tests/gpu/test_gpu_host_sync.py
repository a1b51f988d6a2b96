"""The training loss and its backward never wait for the GPU (no .item(), no data-dependent branch).

A host sync stalls the CPU until the GPU queue drains, so the next step's kernels are not queued in
advance. torch.cuda.set_sync_debug_mode("error") turns every synchronising call into an exception.
DiffusionSat is left out on purpose: its 3D ControlNet checks `frame_valid.any(1).all()` on the host
(models/controlnet3d.py), one sync per forward.
"""

import pytest
import torch

from satdiffmoe.training import task_class


@pytest.mark.gpu
@pytest.mark.parametrize("stage", ["satdiffmoe", "controlnet"])
def test_training_loss_and_backward_do_not_sync_with_the_host(stage, tiny_cfg, make_batch):
    cfg = tiny_cfg(f"stage={stage}")
    task = task_class(stage)(cfg).to("cuda").train()
    batch = make_batch(cfg, scenes=4, branches=1, device="cuda")
    generator = torch.Generator("cuda").manual_seed(0)
    with torch.autocast("cuda", dtype=torch.bfloat16):  # warm-up: lazy initialisation may sync once
        task.diffusion_loss(batch, generator, cfg.model.cond_dropout).backward()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = task.diffusion_loss(batch, generator, cfg.model.cond_dropout)
        loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
