"""The ControlNet and DiffusionSat LightningModules: they learn, the prior never moves, step 0 = prior."""

import lightning.pytorch as pl
import pytest
import torch
from baseline_toys import scene_batch, task_config

from satdiffmoe.pipelines.inputs import SRInputs
from satdiffmoe.training import task_class

STAGES = ["controlnet", "diffusionsat"]


def branches(task, batch, **sampler):
    """How the task's pipeline turns a batch into sampling branches."""
    return task.pipeline.branches(SRInputs.from_batch(batch), task.pipeline.sampler_config(**sampler))
STEPS = 40


def fixed_loss(task, batch) -> float:
    with torch.no_grad():
        return float(task.diffusion_loss(batch, torch.Generator().manual_seed(123), dropout=0.0))


@pytest.mark.parametrize("stage", STAGES)
def test_training_lowers_the_loss_and_leaves_the_prior_bit_identical(pretrained_dirs, stage):
    torch.manual_seed(0)
    task = task_class(stage)(task_config(pretrained_dirs, stage, **{"train.max_steps": STEPS, "train.lr": 3e-3}))
    batch = scene_batch(scenes=4, lrs=3, valid_lrs=[1, 2, 3, 3])
    prior_before = {k: v.clone() for k, v in task.network.prior.state_dict().items()}
    vae_before = {k: v.clone() for k, v in task.vae.state_dict().items()}
    before = fixed_loss(task, batch)

    trainer = pl.Trainer(max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, accelerator="cpu")
    trainer.fit(task, train_dataloaders=torch.utils.data.DataLoader([batch] * STEPS, batch_size=None))

    after = fixed_loss(task, batch)
    assert after < 0.9 * before, (before, after)
    for key, value in task.network.prior.state_dict().items():
        assert torch.equal(value, prior_before[key]), key
    for key, value in task.vae.state_dict().items():
        assert torch.equal(value, vae_before[key]), key


@pytest.mark.parametrize("stage", STAGES)
def test_only_the_control_branch_trains(pretrained_dirs, stage):
    task = task_class(stage)(task_config(pretrained_dirs, stage))
    trainable = {name.split(".")[1] for name, p in task.named_parameters() if p.requires_grad}
    assert trainable == ({"controlnet", "dt_embedding"} if stage == "controlnet" else {"controlnet", "metadata"})
    counts = sum(p.numel() for p in task.parameters() if p.requires_grad), sum(p.numel() for p in task.parameters())
    assert 0 < counts[0] < counts[1]


@pytest.mark.parametrize("stage", STAGES)
def test_step_zero_denoiser_equals_the_prior(pretrained_dirs, stage):
    task = task_class(stage)(task_config(pretrained_dirs, stage)).eval()
    batch = scene_batch(scenes=2, lrs=3, valid_lrs=[2, 3])
    inputs = branches(task, batch)
    cond = {k: v.flatten(0, 1) for k, v in inputs.cond.items()}
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([20, 700])
    with torch.no_grad():
        assert torch.equal(task.network(z, t, cond, inputs.dt.flatten()), task.network.prior(z, t))


def test_controlnet_branches_are_the_nearest_lr_or_every_lr(pretrained_dirs):
    task = task_class("controlnet")(task_config(pretrained_dirs, "controlnet")).eval()
    batch = scene_batch(scenes=2, lrs=3, valid_lrs=[2, 3])
    batch["dt"] = torch.tensor([[-40.0, 5.0, -1.0], [float("nan"), -9.0, 12.0]])  # row 0 slot 2 is padding
    nearest = branches(task, batch, late_fusion=False)
    assert nearest.valid.shape == (2, 1) and nearest.cond["image"].shape == (2, 1, 4, 8, 8)
    assert nearest.dt[:, 0].tolist() == [5.0, -9.0]
    assert torch.equal(nearest.lr[0, 0], batch["lr"][0, 1])
    late = branches(task, batch, late_fusion=True)
    assert late.cond["image"].shape == (2, 3, 4, 8, 8) and torch.equal(late.valid, batch["lr_valid"])


def test_late_fusion_output_is_the_average_of_per_lr_samples(pretrained_dirs):
    from satdiffmoe.config import with_overrides

    task = task_class("controlnet")(task_config(pretrained_dirs, "controlnet")).eval()
    batch = scene_batch(scenes=1, lrs=2)
    sampler = with_overrides(task.cfg, {"sampler.nfe": 2, "sampler.late_fusion": True, "sampler.fusion_every": 1}).sampler
    out = task.sample(batch, sampler, torch.Generator().manual_seed(0))
    # fusion forced off: each branch is plain DDIM and the image is the mean of the decoded branches
    singles = []
    for slot in range(2):
        one = {k: (v[:, slot:slot + 1] if k in ("lr", "lr_mask", "lr_valid", "dt", "lr_cloud", "lr_doy") else v)
               for k, v in batch.items()}
        singles.append(task.sample(one, sampler, torch.Generator().manual_seed(0)).image)
    assert torch.allclose(out.image, (singles[0] + singles[1]) / 2, atol=1e-5)


def test_diffusionsat_is_one_branch_holding_the_stack(pretrained_dirs):
    task = task_class("diffusionsat")(task_config(pretrained_dirs, "diffusionsat")).eval()
    batch = scene_batch(scenes=2, lrs=3, valid_lrs=[1, 3])
    inputs = branches(task, batch)
    assert inputs.valid.shape == (2, 1)
    assert inputs.cond["image"].shape == (2, 1, 4, 4, 8, 8)  # B×1×T×C×h×w with T = 4
    assert inputs.cond["valid"][:, 0].sum(1).tolist() == [1, 3]
    assert set(inputs.cond) >= {"meta_dt", "meta_gsd", "meta_cloud_cover", "meta_day_of_year"}
    # data consistency sees the same T frames as the condition, in the same order
    assert inputs.lr.shape == (2, 4, 3, 4, 4) and torch.equal(inputs.lr_valid, inputs.cond["valid"][:, 0])
    assert torch.equal(inputs.lr[1, :3].sort(0).values, batch["lr"][1].sort(0).values)
    assert (inputs.lr[0, 1:] == 0).all() and inputs.lr_mask.shape == (2, 4, 4, 4)
    with torch.no_grad():
        sample = task.sample(batch, task.validation_sampler, torch.Generator().manual_seed(0))
    assert sample.image.shape == (2, 3, 16, 16) and torch.isfinite(sample.image).all()
