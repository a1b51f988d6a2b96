"""Pipelines: export -> from_pretrained gives the same samples bit for bit, loads without Lightning,
N = 1 is plain DDIM through the pipeline, and exported folders work wherever checkpoints do."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from satdiffmoe.cli import main
from satdiffmoe.pipelines import SatDiffMoEPipeline, SRInputs, load_pipeline
from satdiffmoe.training.checkpoints import load_task


def lr_stack(count=3, seed=0):
    return torch.rand(count, 3, 4, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_exported_pipeline_samples_exactly_what_the_checkpoint_samples(tiny_ckpt, exported):
    task = load_task(tiny_ckpt[0])
    pipe = SatDiffMoEPipeline.from_pretrained(exported)
    lr, dt = lr_stack(), [-40.0, 3.0, float("nan")]
    settings = {"nfe": 3, "fusion_every": 1, "guidance_scale": 2.0}
    before = task.pipeline(lr, dt, generator=torch.Generator().manual_seed(7), **settings)
    after = pipe(lr, dt, generator=torch.Generator().manual_seed(7), **settings)
    assert torch.equal(before.image, after.image) and torch.equal(before.uncertainty, after.uncertainty)
    assert after.image.shape == (1, 3, 16, 16) and after.nfe == 6
    assert pipe.config.hr_size == 16 and pipe.config.scale == 4
    assert pipe.cfg.stage == "satdiffmoe"  # the training config travels with the folder


def test_the_folder_is_the_diffusers_layout(exported):
    index = json.loads((exported / "model_index.json").read_text())
    assert index["_class_name"] == ["satdiffmoe_pipeline", "SatDiffMoEPipeline"]  # the Hub's custom-pipeline form
    assert (exported / "satdiffmoe_pipeline.py").is_file()
    assert index["denoiser"] == ["satdiffmoe.models.denoisers", "UNetDenoiser"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    for part in ("vae", "denoiser"):
        assert (exported / part / "diffusion_pytorch_model.safetensors").is_file()
    assert (exported / "scheduler" / "scheduler_config.json").is_file()


def test_a_pipeline_loads_and_runs_in_a_process_that_never_imports_lightning(exported):
    code = (
        "import sys, torch\n"
        "from satdiffmoe.pipelines import load_pipeline\n"
        f"pipe = load_pipeline({str(exported)!r})\n"
        "out = pipe([torch.zeros(3, 4, 4), torch.zeros(3, 4, 4)], dt=[1.0, -5.0], nfe=2)\n"
        "assert out.image.shape == (1, 3, 16, 16), out.image.shape\n"
        "print('lightning' in sys.modules, 'pytorch_lightning' in sys.modules)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-2:] == ["False", "False"]


def test_diffusers_own_loader_opens_the_folder_without_lightning(exported, tmp_path):
    """`diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`, as for any custom
    pipeline: it imports the folder's satdiffmoe_pipeline.py and samples what satdiffmoe's loader does."""
    code = (
        "import sys, torch, diffusers\n"
        f"folder = {str(exported)!r}\n"
        "try:\n"
        "    diffusers.DiffusionPipeline.from_pretrained(folder)\n"
        "except ValueError as exc:\n"
        "    print('trust_remote_code' in str(exc))\n"
        "pipe = diffusers.DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)\n"
        "from satdiffmoe.pipelines import SatDiffMoEPipeline\n"
        "ours = SatDiffMoEPipeline.from_pretrained(folder)\n"
        "lr, dt = [torch.zeros(3, 4, 4), torch.ones(3, 4, 4) / 2], [1.0, -5.0]\n"
        "a, b = (p(lr, dt=dt, nfe=2, generator=torch.Generator().manual_seed(1)).image for p in (pipe, ours))\n"
        "print(type(pipe).__name__, torch.equal(a, b), 'lightning' in sys.modules, 'pytorch_lightning' in sys.modules)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_MODULES_CACHE": str(tmp_path / "modules")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-5:] == ["True", "SatDiffMoEPipeline", "True", "False", "False"], done.stdout


def test_one_lr_through_the_pipeline_is_plain_ddim(tiny_ckpt):
    pipe = load_task(tiny_ckpt[0]).pipeline
    lr, dt = lr_stack(count=1), torch.tensor([[12.0]])
    out = pipe(lr, dt, nfe=4, generator=torch.Generator().manual_seed(3))
    cond = pipe.condition_image(lr)
    # a DDIMPipeline-style loop on the pipeline's own schedule: scheduler.step on the raw model output
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config, set_alpha_to_one=True, clip_sample=False)
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(3)
    latent = randn_tensor((1, 1, *pipe.latent_shape), generator=generator)[:, 0]
    with torch.no_grad():
        for t in scheduler.timesteps:
            latent = scheduler.step(pipe.denoiser(latent, t.expand(1), cond, dt[0]), t, latent).prev_sample
    torch.testing.assert_close(out.image, pipe.decode(latent), rtol=0, atol=1e-5)


def test_inputs_accept_arrays_lists_and_batches():
    single = SRInputs.build([np.zeros((3, 4, 4)), np.ones((3, 4, 4))], dt=[1, 2])
    assert single.lr.shape == (1, 2, 3, 4, 4) and single.dt.tolist() == [[1.0, 2.0]]
    assert torch.isnan(single.gsd).all() and single.lr_valid.all() and (single.lr_cloud == 0).all()
    with pytest.raises(ValueError, match="one value per LR"):
        SRInputs.build(torch.zeros(2, 3, 4, 4), dt=[1.0])
    with pytest.raises(ValueError, match="B×N×C×h×w"):
        SRInputs.build(torch.zeros(3, 4))


def test_sample_and_evaluate_accept_an_exported_folder(tiny_ckpt, exported, tmp_path):
    from PIL import Image

    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"lr{i}.png"))
        Image.fromarray(np.full((4, 4, 3), 60 + 40 * i, dtype=np.uint8)).save(paths[-1])
    out = tmp_path / "sr.png"
    assert main(["sample", "--ckpt", str(exported), "--lr", *paths, "--dt", "3", "5", "--out", str(out),
                 "sampler.nfe=1"]) == 0
    assert np.asarray(Image.open(out)).shape == (16, 16, 3)


def test_export_never_overwrites_what_is_not_its_own(tiny_ckpt, exported, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert main(["export", str(tiny_ckpt[0]), "--out", str(other)]) == 2
    assert (other / "keep.txt").read_text() == "mine"
    assert main(["export", str(tiny_ckpt[0]), "--out", str(exported)]) == 2  # an export, but no --overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert load_pipeline(exported).config.hr_size == 16


def test_checkpoints_written_before_the_denoiser_modules_still_load(tiny_ckpt, tmp_path):
    """The old hyper-parameters stored the bare UNet's config ("unet"), not a denoiser config."""
    checkpoint = torch.load(tiny_ckpt[0], weights_only=True)
    networks = checkpoint["hyper_parameters"]["networks"]
    networks["unet"] = networks.pop("denoiser")["unet_config"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    task, reference = load_task(old), load_task(tiny_ckpt[0])
    lr = lr_stack()
    a = task.pipeline(lr, [0.0, 1.0, 2.0], nfe=2, generator=torch.Generator().manual_seed(0)).image
    b = reference.pipeline(lr, [0.0, 1.0, 2.0], nfe=2, generator=torch.Generator().manual_seed(0)).image
    assert torch.equal(a, b)
