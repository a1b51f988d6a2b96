"""Each stage learns, starts where it should, and stores what later stages need."""

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DModel
from training_toys import tiny_batch, tiny_config

from satdiffmoe.errors import UserError
from satdiffmoe.pipelines.inputs import SRInputs
from satdiffmoe.training.checkpoints import load_task
from satdiffmoe.training.trainer import build_task


def loss_after_steps(task, steps: int) -> tuple:
    """(loss before, loss after) `steps` AdamW steps on one batch with one fixed noise draw."""
    batch = tiny_batch()
    optimizer = task.configure_optimizers()["optimizer"]

    def loss(seed=123):
        generator = torch.Generator().manual_seed(seed)
        if task.stage == "autoencoder":
            torch.manual_seed(seed)
            return task.reconstruction_loss(batch["hr"], sample=False)[0]
        return task.diffusion_loss(batch, generator, dropout=0.0)

    with torch.no_grad():
        before = loss().item()
    for _ in range(steps):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        return before, loss().item()


@pytest.mark.parametrize("stage", ["autoencoder", "prior", "satdiffmoe"])
def test_a_few_steps_reduce_the_loss_on_a_tiny_batch(stage, tmp_path, trained_chain):
    init = {"autoencoder": [], "prior": [f"init.vae_ckpt={trained_chain['autoencoder']}"],
            "satdiffmoe": [f"init.prior_ckpt={trained_chain['prior']}"]}[stage]
    torch.manual_seed(0)
    task = build_task(tiny_config(tmp_path, f"stage={stage}", "train.lr=3e-3", *init))
    before, after = loss_after_steps(task, steps=15)
    assert after < 0.6 * before, (before, after)


def test_satdiffmoe_at_step_zero_computes_the_prior_for_any_condition(tmp_path, trained_chain):
    prior = load_task(trained_chain["prior"], expect_stage="prior")
    task = build_task(tiny_config(tmp_path, "stage=satdiffmoe", f"init.prior_ckpt={trained_chain['prior']}"))
    branches = task.pipeline.branches(SRInputs.from_batch(tiny_batch(scenes=2)), task.pipeline.sampler_config())
    cond, dt = branches.cond.flatten(0, 1), branches.dt.flatten()  # 4 rows: Δt = -30 and unknown
    z, t = torch.randn(4, *task.latent_shape), torch.tensor([1, 30, 60, 99])
    with torch.no_grad():  # zero weights add exact zeros; only the conv's summation order differs
        expected = prior.network(z, t, None, None)
        torch.testing.assert_close(task.network(z, t, cond, dt), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(task.network(z, t, None, dt), expected, rtol=0, atol=1e-5)
    assert task.latent_scale == prior.latent_scale  # the prior carries its VAE and latent scale


def test_pixel_conditioning_resizes_the_lr_to_the_latent_size(tmp_path, trained_chain):
    task = build_task(tiny_config(tmp_path, "stage=satdiffmoe", "model.conditioning=pixel",
                                  f"init.prior_ckpt={trained_chain['prior']}"))
    branches = task.pipeline.branches(SRInputs.from_batch(tiny_batch(scenes=2)), task.pipeline.sampler_config())
    assert branches.cond.shape == (2, 2, 3, 8, 8)  # B×N×C×(latent side)²
    assert task.network.unet.conv_in.weight.shape[1] == 4 + 3


def test_autoencoder_stores_the_latent_scale_in_checkpoint_and_vae_config(trained_chain):
    checkpoint = torch.load(trained_chain["autoencoder"] / "checkpoints" / "last.ckpt", weights_only=True)
    task = load_task(trained_chain["autoencoder"], expect_stage="autoencoder")
    assert checkpoint["latent_scale"] != 1.0 and checkpoint["latent_scale"] > 0
    assert task.latent_scale == pytest.approx(checkpoint["latent_scale"])
    assert task.vae.config.scaling_factor == pytest.approx(checkpoint["latent_scale"])
    latents = task.vae.encode(tiny_batch()["hr"]).latent_dist.mode() * task.latent_scale
    assert 0.5 < latents.std().item() < 2.0  # about unit variance, measured on the same scenes


def test_checkpoint_of_the_wrong_stage_is_a_user_error(trained_chain):
    with pytest.raises(UserError, match="'autoencoder' checkpoint but a 'prior' checkpoint"):
        load_task(trained_chain["autoencoder"], expect_stage="prior")


def test_checkpoint_of_another_model_size_is_a_user_error_naming_both_shapes(tmp_path, trained_chain):
    bigger = tiny_config(tmp_path, "stage=autoencoder", "model.vae.block_out_channels=[16,16]")
    with pytest.raises(UserError, match=r"shape \(8, 3, 3, 3\) in the checkpoint but \(16, 3, 3, 3\)"):
        load_task(trained_chain["autoencoder"], config=bigger)


def test_prior_starts_from_local_pretrained_diffusers_folders(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), norm_num_groups=4,
                        latent_channels=4, scaling_factor=0.3)
    unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, layers_per_block=1)
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    task = build_task(tiny_config(tmp_path, "stage=prior", f"model.vae.pretrained={tmp_path / 'vae'}",
                                  f"model.unet.pretrained={tmp_path / 'unet'}"))
    assert task.latent_scale == pytest.approx(0.3)
    assert torch.equal(task.vae.encoder.conv_in.weight, vae.encoder.conv_in.weight)
    assert torch.equal(task.network.unet.conv_out.weight, unet.conv_out.weight)


def test_missing_init_is_a_user_error_that_names_the_keys(tmp_path):
    with pytest.raises(UserError, match="init.vae_ckpt"):
        build_task(tiny_config(tmp_path, "stage=prior"))


def test_autoencoder_perceptual_term_adds_lpips_to_the_l1_loss(tmp_path):
    from satdiffmoe.evaluation.metrics import load_lpips
    from satdiffmoe.training.autoencoder import AutoencoderTask

    cfg = tiny_config(tmp_path, "stage=autoencoder", "data.hr_size=32", "train.perceptual_weight=0.5",
                      "train.autoencoder_lr_images=false")
    task = AutoencoderTask(cfg)
    hr = torch.nn.functional.interpolate(tiny_batch()["hr"], size=(32, 32), mode="bilinear")
    torch.manual_seed(0)
    loss, rec, kl, reconstruction, _ = task.reconstruction_loss(hr, sample=False)
    expected = rec + cfg.train.kl_weight * kl + 0.5 * load_lpips(None)(reconstruction, hr).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5) and float(loss - rec) > 0.01
    assert task.training_images({"hr": hr, "lr": None}) is hr  # HR only: no upsampled LRs
    assert not any("lpips" in key for key in task.state_dict())  # the metric network is not saved


@pytest.mark.parametrize("stage", ["autoencoder", "prior"])
def test_train_compile_compiles_the_trained_network_of_the_autoencoder_and_diffusion_stages(stage, tmp_path, trained_chain):
    # the autoencoder stage once ignored train.compile: its VAE is the network it trains
    extra = [] if stage == "autoencoder" else [f"init.vae_ckpt={trained_chain['autoencoder']}"]
    task = build_task(tiny_config(tmp_path, f"stage={stage}", "train.compile=true", *extra))
    trained = [task.vae.encoder, task.vae.decoder] if stage == "autoencoder" else [task.network]
    assert all(module._compiled_call_impl is not None for module in trained)
    assert not any("_orig_mod" in key for key in task.state_dict())  # compiled in place: keys unchanged


def test_autoencoder_perceptual_term_on_images_too_small_for_alexnet_is_a_user_error(tmp_path):
    from satdiffmoe.training.autoencoder import AutoencoderTask

    with pytest.raises(UserError, match="train.perceptual_weight=0.5 needs LPIPS: LPIPS \\(AlexNet\\) needs images"):
        AutoencoderTask(tiny_config(tmp_path, "stage=autoencoder", "train.perceptual_weight=0.5"))
