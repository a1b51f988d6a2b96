"""Toy denoisers and a plain diffusers DDIM reference loop for the sampler tests (imported by name:
pytest puts this folder on sys.path, and the file name is unique across tests/)."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor

from satdiffmoe.config.schema import SamplerConfig

torch.set_num_threads(1)

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
            "beta_end": 0.012}


class ToyDenoiser(torch.nn.Module):
    """A tiny conv net over concat(z_t, cond) with timestep and Δt shifts: enough to be non-trivial."""

    def __init__(self, channels: int = 2, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.calls = 0

    def forward(self, z, t, cond, dt):
        self.calls += 1
        cond = torch.zeros_like(z) if cond is None else cond
        t_shift = (t.float() / 1000.0).view(-1, 1, 1, 1)
        dt_shift = torch.nan_to_num(dt.float(), nan=0.0).view(-1, 1, 1, 1) / 100.0
        return 0.5 * torch.tanh(self.conv(torch.cat([z, cond], 1))) + 0.1 * t_shift * z + 0.01 * dt_shift


def sampler_cfg(**overrides) -> SamplerConfig:
    cfg = SamplerConfig(nfe=8, fusion_every=2, shared_noise=True)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def reference_ddim(denoise, cond, dt, shape, seed, nfe, prediction_type="epsilon", eta=0.0):
    """A DDIMPipeline-style loop: scheduler.step on the raw model output, nothing else."""
    scheduler = DDIMScheduler.from_config(SCHEDULE, prediction_type=prediction_type, set_alpha_to_one=True,
                                          clip_sample=False)
    scheduler.set_timesteps(nfe)
    generator = torch.Generator().manual_seed(seed)
    z = randn_tensor(shape, generator=generator)
    for t in scheduler.timesteps:
        out = denoise(z, t.expand(shape[0]), cond, dt)
        z = scheduler.step(out, t, z, eta=eta, generator=generator if eta > 0 else None).prev_sample
    return z


class GaussianPosteriorDenoiser:
    """Exact E[x0 | z_t, y] for x0 ~ N(0, I) and one observation y = x0 + N(0, s²I) (the branch's cond).

    The ideal single-LR model: returns the epsilon that matches that conditional expectation.
    """

    def __init__(self, obs_std: float):
        self.obs_var = obs_std ** 2
        self.alphas_cumprod = DDIMScheduler.from_config(SCHEDULE).alphas_cumprod

    def __call__(self, z, t, cond, dt):
        alpha_bar = self.alphas_cumprod[t.long()].view(-1, 1, 1, 1)
        alpha, sigma2 = alpha_bar.sqrt(), 1 - alpha_bar
        precision = 1 + alpha_bar / sigma2 + 1 / self.obs_var
        x0 = (alpha / sigma2 * z + cond / self.obs_var) / precision
        return (z - alpha * x0) / sigma2.sqrt()

    def posterior_mean(self, observations):
        """E[x0 | y_1..y_N] for observations N×..."""
        return observations.sum(0) / self.obs_var / (1 + observations.shape[0] / self.obs_var)


TINY_MODEL = [
    "data.hr_size=16", "data.scale=4", "data.channels=3", "data.eval_batch_size=4",
    "model.vae.latent_channels=4", "model.unet.block_out_channels=[16,32]",
    "model.unet.attention_levels=[false,false]", "model.unet.attention_head_dim=8", "model.unet.norm_num_groups=4",
    "diffusion.num_train_timesteps=100", "sampler.nfe=3", "sampler.fusion_every=1",
    "logging.wandb.mode=disabled", "logging.progress_bar=false", "train.ema_decay=0",
]


def tiny_checkpoint(root):
    """A real SatDiffMoE checkpoint (random tiny VAE + UNet, 16 px HR ×4) saved by a Lightning Trainer."""
    import lightning.pytorch as pl
    from diffusers import AutoencoderKL

    from satdiffmoe.config import load_config
    from satdiffmoe.training import task_class

    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                        latent_channels=4, norm_num_groups=4)
    vae.save_pretrained(root / "vae")
    cfg = load_config(None, TINY_MODEL + [f"model.vae.pretrained={root / 'vae'}", f"run_root={root / 'runs'}"])
    task = task_class("satdiffmoe")(cfg)
    # training/base.py keeps diffusers' `_name_or_path` as a PosixPath, which weights_only loading
    # rejects (reported to the training engineer); drop it until plain_config stringifies paths.
    task.hparams["networks"]["vae"].pop("_name_or_path", None)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, accelerator="cpu")
    trainer.strategy.connect(task)
    run = root / "runs" / "tiny" / "r0"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny\n")
    trainer.save_checkpoint(run / "checkpoints" / "last.ckpt")
    return run / "checkpoints" / "last.ckpt", cfg
