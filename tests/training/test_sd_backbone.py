"""The stages on a Stable Diffusion backbone (a tiny random SD-layout folder, tests/models/tiny_sd.py):
each trains a step and samples through the fused sampler, starts as the pretrained model, and LoRA
trains only what the config says, saves, resumes and exports."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))  # tiny_sd: the SD-folder fixture
sys.path.insert(0, str(Path(__file__).parents[1] / "sampling"))  # sampling_toys: batches
from sampling_toys import scene_batch  # noqa: E402
from tiny_sd import write_tiny_sd  # noqa: E402

from satdiffmoe.config import load_config  # noqa: E402
from satdiffmoe.models.denoisers import SDControlNetDenoiser, SDDiffusionSatDenoiser, SDUNetDenoiser  # noqa: E402
from satdiffmoe.models.trainable import count_parameters  # noqa: E402
from satdiffmoe.pipelines.inputs import SRInputs  # noqa: E402
from satdiffmoe.training import task_class  # noqa: E402
from satdiffmoe.training.checkpoints import load_task  # noqa: E402

SD_MODEL = ["data.hr_size=16", "data.scale=4", "data.channels=3", "sampler.nfe=2", "sampler.fusion_every=1",
            "logging.wandb.mode=disabled", "logging.progress_bar=false", "train.ema_decay=0", "train.val_nfe=2",
            "model.null_tokens=4", "model.controlnet.frames=4", "model.controlnet.temporal_heads=2",
            "model.metadata_embedding=true"]


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def sd_task(folder, stage: str, *overrides: str):
    policy = ["data.train_lr_policy=all"] if stage == "diffusionsat" else []
    cfg = load_config(None, SD_MODEL + policy + [f"stage={stage}", f"model.unet.pretrained={folder}", *overrides])
    torch.manual_seed(0)
    return task_class(stage)(cfg)


def save(task, path: Path) -> Path:
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


def train_steps(task, steps: int, batch) -> None:
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * steps, batch_size=None))


def test_the_folder_supplies_unet_vae_and_schedule(sd_folder):
    task = sd_task(sd_folder, "prior")
    assert isinstance(task.network, SDUNetDenoiser)
    assert task.prediction_type == "v_prediction"  # from the folder's scheduler, as SD 2.x
    assert task.noise_scheduler.config.num_train_timesteps == 1000
    assert tuple(task.vae.config.block_out_channels) == (8, 16)
    assert task.latent_shape == (4, 8, 8)


@pytest.mark.parametrize("stage", ["prior", "satdiffmoe", "controlnet", "diffusionsat"])
def test_each_stage_trains_a_step_and_samples_on_the_sd_backbone(sd_folder, tmp_path, stage):
    extra = ()
    if stage in ("controlnet", "diffusionsat"):
        prior = save(sd_task(sd_folder, "prior"), tmp_path / "prior.ckpt")
        extra = (f"init.prior_ckpt={prior}",)
    task = sd_task(sd_folder, stage, *extra)
    batch = scene_batch()
    train_steps(task, 2, batch)
    with torch.no_grad():
        out = task.sample(batch, task.validation_sampler, torch.Generator().manual_seed(0))
    assert out.image.shape == (2, 3, 16, 16) and torch.isfinite(out.image).all()
    if stage != "prior":
        assert isinstance(task.network, {"satdiffmoe": SDUNetDenoiser, "controlnet": SDControlNetDenoiser,
                                         "diffusionsat": SDDiffusionSatDenoiser}[stage])


@pytest.mark.parametrize("stage", ["satdiffmoe", "controlnet", "diffusionsat"])
def test_step_zero_computes_the_pretrained_unet(sd_folder, tmp_path, stage):
    prior = sd_task(sd_folder, "prior").eval()
    ckpt = save(prior, tmp_path / "prior.ckpt")
    task = sd_task(sd_folder, stage, f"init.prior_ckpt={ckpt}").eval()
    inputs = task.pipeline.branches(SRInputs.from_batch(scene_batch()), task.pipeline.sampler_config())
    cond = {k: v.flatten(0, 1) for k, v in inputs.cond.items()} if isinstance(inputs.cond, dict) \
        else inputs.cond.flatten(0, 1)
    rows = inputs.dt.numel()
    z, t = torch.randn(rows, 4, 8, 8), torch.randint(0, 1000, (rows,))
    with torch.no_grad():
        torch.testing.assert_close(task.network(z, t, cond, inputs.dt.flatten()), prior.network(z, t),
                                   rtol=0, atol=1e-5)


def test_lora_trains_only_adapters_and_new_inputs_and_resumes_exactly(sd_folder, tmp_path):
    full = sd_task(sd_folder, "satdiffmoe")
    task = sd_task(sd_folder, "satdiffmoe", "train.trainable=lora", "train.lora_rank=2")
    trainable, total = count_parameters(task.network)
    names = [n for n, p in task.network.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith(task.network.always_trainable) for n in names)
    assert trainable < count_parameters(full.network)[0] / 4 and total > count_parameters(full.network)[1]
    frozen = {n: p.detach().clone() for n, p in task.network.named_parameters() if not p.requires_grad}
    batch = scene_batch()
    train_steps(task, 3, batch)
    for name, param in task.network.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name
    assert any(not torch.equal(p, 0 * p) for n, p in task.network.named_parameters() if "lora_B" in n)

    ckpt = save(task, tmp_path / "lora.ckpt")
    resumed = load_task(ckpt)
    assert count_parameters(resumed.network) == (trainable, total)
    for (name, a), (_, b) in zip(task.network.state_dict().items(), resumed.network.state_dict().items()):
        assert torch.equal(a, b), name
    generator = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    with torch.no_grad():
        a = task.eval().sample(batch, task.validation_sampler, generator()).image
        b = resumed.sample(batch, resumed.validation_sampler, generator()).image
    assert torch.equal(a, b)


def test_a_lora_checkpoint_exports_with_its_adapters_merged(sd_folder, tmp_path):
    from satdiffmoe.cli import main
    from satdiffmoe.pipelines import load_pipeline

    task = sd_task(sd_folder, "satdiffmoe", "train.trainable=lora", "train.lora_rank=2")
    with torch.no_grad():
        for name, param in task.network.named_parameters():
            if "lora_B" in name:
                param.add_(0.05 * torch.randn_like(param))  # adapters that change the output
    ckpt = save(task, tmp_path / "lora.ckpt")
    out = tmp_path / "exported"
    assert main(["export", str(ckpt), "--out", str(out)]) == 0
    pipe = load_pipeline(out)
    lr, dt = scene_batch()["lr"][:1], [[3.0, -5.0, 10.0]]
    with torch.no_grad():
        expected = task.eval().pipeline(lr, dt, nfe=2, generator=torch.Generator().manual_seed(0)).image
        got = pipe(lr, dt, nfe=2, generator=torch.Generator().manual_seed(0)).image
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)  # merging reorders the sums only


def test_a_folder_that_is_no_backbone_is_one_line_and_exit_2(tmp_path, capsys):
    from satdiffmoe.cli import main

    folder = tmp_path / "not-sd"
    folder.mkdir()
    (folder / "config.json").write_text('{"_class_name": "AutoencoderKL"}')
    config = Path(__file__).parents[2] / "experiments" / "quickstart.yaml"
    code = main(["train", str(config), "stage=prior", f"model.unet.pretrained={folder}",
                 f"run_root={tmp_path / 'runs'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "not a UNet" in err[0], err
