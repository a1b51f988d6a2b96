"""`model.conditioning=multiband`: a 13-band LR conditions an RGB model through a learned encoder
(SatDiffMoE) or the ControlNet's own conditioning embedding; step 0 is the prior, the new parts get
gradients, data consistency sees the LR's RGB bands, and the pipeline samples and exports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DModel

sys.path.insert(0, str(Path(__file__).parents[1] / "sampling"))  # sampling_toys: the tiny pretrained folders
from sampling_toys import TINY_MODEL, save_tiny_pretrained  # noqa: E402

from satdiffmoe.config import load_config  # noqa: E402
from satdiffmoe.pipelines.inputs import SRInputs  # noqa: E402
from satdiffmoe.training import task_class  # noqa: E402

MULTIBAND = ["model.conditioning=multiband", "data.lr_channels=13", "data.lr_rgb=[3,2,1]"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    return save_tiny_pretrained(tmp_path_factory.mktemp("pretrained"))


def multiband_task(pretrained, stage: str, *overrides: str):
    cfg = load_config(None, TINY_MODEL + MULTIBAND + [
        f"stage={stage}", f"model.vae.pretrained={pretrained / 'vae'}", f"model.unet.pretrained={pretrained / 'unet'}",
        "model.controlnet.frames=4", "model.controlnet.temporal_heads=2", *overrides])
    torch.manual_seed(0)
    return task_class(stage)(cfg)


def multiband_batch(scenes=2, lrs=3):
    g = torch.Generator().manual_seed(0)
    hr = torch.rand(scenes, 3, 16, 16, generator=g) * 2 - 1
    return {"hr": hr, "lr": torch.rand(scenes, lrs, 13, 4, 4, generator=g) * 2 - 1,
            "lr_mask": torch.ones(scenes, lrs, 4, 4), "lr_valid": torch.ones(scenes, lrs, dtype=torch.bool),
            "dt": torch.randn(scenes, lrs, generator=g) * 30, "lr_cloud": torch.zeros(scenes, lrs),
            "lr_doy": torch.full((scenes, lrs), 100.0), "gsd": torch.full((scenes,), 1.5),
            "hr_mask": torch.ones(scenes, 16, 16), "key": [f"s{i}" for i in range(scenes)]}


@pytest.mark.parametrize("stage", ["satdiffmoe", "controlnet", "diffusionsat"])
def test_step_zero_is_the_prior_and_the_new_parts_learn(pretrained, stage):
    extra = ("data.train_lr_policy=all",) if stage == "diffusionsat" else ()
    task = multiband_task(pretrained, stage, *extra)
    batch = multiband_batch()
    inputs = task.pipeline.branches(SRInputs.from_batch(batch), task.pipeline.sampler_config())
    image = inputs.cond["image"] if isinstance(inputs.cond, dict) else inputs.cond
    assert image.shape[-3:] == (13, 16, 16)  # every band, bicubic-upsampled to the HR size
    assert inputs.lr.shape[2] == 3  # data consistency compares with the LR's RGB bands
    if stage == "satdiffmoe":  # (the baselines keep the nearest LR only)
        assert torch.equal(inputs.lr, batch["lr"][:, :, [3, 2, 1]])
    cond = {k: v.flatten(0, 1) for k, v in inputs.cond.items()} if isinstance(inputs.cond, dict) \
        else inputs.cond.flatten(0, 1)
    rows = inputs.dt.numel()
    z, t = torch.randn(rows, 4, 8, 8), torch.randint(0, 100, (rows,))
    with torch.no_grad():  # the pretrained UNet the stage started from
        expected = UNet2DModel.from_pretrained(pretrained / "unet")(z, t).sample
        torch.testing.assert_close(task.network(z, t, cond, inputs.dt.flatten()), expected, rtol=0, atol=1e-5)
    loss = task.diffusion_loss(batch, torch.Generator().manual_seed(1), dropout=0.0)
    loss.backward()
    new = "condition_encoder" if stage == "satdiffmoe" else "controlnet"
    grads = [p.grad for n, p in task.network.named_parameters() if n.startswith(new) and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_multiband_pipeline_samples_and_keeps_its_band_mapping(pretrained, tmp_path):
    from satdiffmoe.pipelines import load_pipeline

    task = multiband_task(pretrained, "satdiffmoe", "sampler.consensus=optimized").eval()
    lr = torch.rand(3, 13, 4, 4) * 2 - 1
    out = task.pipeline(lr, [1.0, -4.0, 9.0], generator=torch.Generator().manual_seed(0))
    assert out.image.shape == (1, 3, 16, 16) and torch.isfinite(out.image).all()
    task.pipeline.save_pretrained(tmp_path / "exported")
    pipe = load_pipeline(tmp_path / "exported")
    assert pipe.config.lr_rgb == [3, 2, 1] and pipe.config.conditioning == "multiband"
    again = pipe(lr, [1.0, -4.0, 9.0], generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.image, again.image)


def test_regression_baselines_refuse_multispectral_records(pretrained):
    from satdiffmoe.errors import UserError

    cfg = load_config(None, TINY_MODEL + MULTIBAND[1:] + ["stage=srcnn"])
    with pytest.raises(UserError, match="model.conditioning=multiband"):
        task_class("srcnn")(cfg)
