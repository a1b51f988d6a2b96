"""The shared base of every stage's LightningModule.

`SatTask` holds what every stage needs: the validated config, hyper-parameters that make a checkpoint
self-describing ({"stage", "config", "networks"}), the optimizer, the latent scale kept in the
checkpoint, image grids. `DiffusionTask` adds latent diffusion on a frozen VAE: the noise schedule,
the ε/v loss with condition dropout, and fast validation by sampling.

The method itself is not here. A diffusion stage builds its denoiser (models/denoisers.py) in
`configure_network` and hands VAE, denoiser and noise schedule to its pipeline (pipelines/), which
owns how LRs become conditions and sampling branches; training calls the denoiser, validation,
`evaluate` and sweeps call the pipeline (`task.sample(batch, sampler, generator)` is a shortcut to
`task.pipeline.sample`). A subclass implements `configure_network` and `training_condition`.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DDPMScheduler
from omegaconf import DictConfig
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ..config import as_plain, config_from_dict, with_overrides
from ..data.lr_stack import bicubic_upsample, lr_band_count, lr_rgb_view
from ..errors import UserError, user_errors
from ..evaluation.metrics import load_lpips, lpips, lpips_unavailable
from ..models import latent_cache
from ..models.autoencoder import downsampling_factor, load_pretrained_vae
from ..models.condition_encoder import default_widths
from ..models.denoisers import DENOISERS, Denoiser
from ..models.latent_cache import encode_posterior
from ..models.portable import portable_config
from ..models.stable_diffusion import SDBackbone, load_sd_backbone, pretrained_folder_kind
from ..models.trainable import apply_trainable
from ..pipelines.registry import PIPELINES
from ..sampling.noise import scene_generators
from .loggers import log_image_grid
from .optim import configure_adamw

log = logging.getLogger(__name__)

Cond = Any  # tensor, dict of tensors, or None (see models.denoisers.Cond)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


class SatTask(pl.LightningModule):
    stage: str = ""
    # metrics this task's validation logs; `train.monitor` falls back to `default_monitor` otherwise
    validation_metrics: tuple[str, ...] = ("val/loss",)
    default_monitor: tuple[str, str] = ("val/loss", "min")

    def __init__(self, config: dict | DictConfig, networks: dict | None = None):
        super().__init__()
        self.cfg = config_from_dict(as_plain(config))
        self.latent_scale = 1.0
        self.val_psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.val_ssim = StructuralSimilarityIndexMeasure(data_range=1.0)
        # A metric, not `sync_dist=True`: ranks with uneven validation shares need the sample-weighted
        # mean over all ranks, not the mean of per-rank means (tests/reliability/test_ddp_reduction.py).
        self.val_loss = MeanMetric()
        self.val_lpips = MeanMetric()
        self._lpips_net: torch.nn.Module | None = None  # built on first use, never saved in checkpoints
        self._lpips_off = not self.cfg.train.val_lpips

    def finish_init(self) -> None:
        """Call at the end of a subclass __init__, once the networks exist."""
        self.save_hyperparameters({"stage": self.stage, "config": as_plain(self.cfg),
                                   "networks": self.network_configs()})

    def network_configs(self) -> dict:
        """Constructor configs of every network, so `load_task` rebuilds them without the init checkpoints."""
        return {}

    def monitor(self) -> tuple[str, str]:
        t = self.cfg.train
        if t.monitor in self.validation_metrics:
            return t.monitor, t.monitor_mode
        log.warning("train.monitor=%s is not logged by stage %s; monitoring %s instead",
                    t.monitor, self.stage, self.default_monitor[0])
        return self.default_monitor

    def trainable_parameters(self):
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        return configure_adamw(self.trainable_parameters(), self.cfg.train)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        # Lightning refuses to clip for a fused optimizer under any mixed precision, because under fp16
        # the fused step unscales the gradients itself. bf16-mixed has no grad scaler: the gradients are
        # true-scale, so clipping them here is exact and train.fused_adamw works with train.grad_clip.
        fused = bool(optimizer.defaults.get("fused"))
        if gradient_clip_val and fused and self.trainer.precision == "bf16-mixed":
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def setup(self, stage: str) -> None:
        if self.cfg.train.channels_last:
            self.to(memory_format=torch.channels_last)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["latent_scale"] = float(self.latent_scale)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.set_latent_scale(checkpoint.get("latent_scale", self.latent_scale))

    def set_latent_scale(self, value: float) -> None:
        self.latent_scale = float(value)
        if getattr(self, "vae", None) is not None:
            self.vae.register_to_config(scaling_factor=float(value))

    def log_fidelity(self, output: torch.Tensor, hr: torch.Tensor) -> None:
        """val/psnr, val/ssim and (train.val_lpips) val/lpips of one validation batch, epoch means."""
        size = hr.shape[0]
        self.val_psnr(to_unit(output), to_unit(hr))
        self.val_ssim(to_unit(output), to_unit(hr))
        self.log("val/psnr", self.val_psnr, on_epoch=True, batch_size=size)
        self.log("val/ssim", self.val_ssim, on_epoch=True, batch_size=size)
        net = self.lpips_network(hr.shape[1], min(hr.shape[-2:]))
        if net is not None:
            self.val_lpips.update(lpips(output, hr, net), weight=size)
            self.log("val/lpips", self.val_lpips, on_epoch=True, batch_size=size)

    def lpips_network(self, channels: int, size: int) -> torch.nn.Module | None:
        """The LPIPS network for val/lpips, or None (switched off, or unavailable: warned once)."""
        if self._lpips_off:
            return None
        if self._lpips_net is None:
            reason = lpips_unavailable(self.cfg.eval.lpips_weights, channels, size)
            if reason:
                log.warning("val/lpips is not logged: %s", reason)
                self._lpips_off = True
                return None
            self.load_lpips_network()
        return self._lpips_net.to(self.device)

    def load_lpips_network(self) -> torch.nn.Module:
        if self._lpips_net is None:
            net = load_lpips(self.cfg.eval.lpips_weights).requires_grad_(False)
            # a plain attribute, not a submodule: the frozen metric network stays out of state_dict
            self.__dict__["_lpips_net"] = net
        return self._lpips_net.to(self.device)

    def log_grid(self, key: str, columns, caption: str) -> None:
        """A PNG grid under `<run>/images/` (the trainer's default_root_dir is the run folder), and W&B."""
        if self.trainer.is_global_zero:
            images = Path(self.trainer.default_root_dir) / "images"
            path = log_image_grid(self.loggers, images, key, self.global_step, columns, caption)
            log.info("wrote %s", path)


class DiffusionTask(SatTask):
    """Latent diffusion on a frozen VAE. See the module docstring for what subclasses implement."""

    validation_metrics = ("val/loss", "val/psnr", "val/ssim", "val/lpips")
    default_monitor = ("val/psnr", "max")
    uses_condition_dropout = True

    def __init__(self, config: dict | DictConfig, networks: dict | None = None):
        super().__init__(config, networks)
        cfg = self.cfg
        self.vae = self.configure_vae(networks)
        self.vae.requires_grad_(False)
        self.vae.eval()
        self.noise_scheduler = DDPMScheduler.from_config(self.scheduler_config_for(networks), clip_sample=False)
        self.network: Denoiser = self.configure_network(networks)
        self.configure_trainable()
        self.__dict__.pop("_sd_backbone", None)  # the SD folder's parts are copied into the networks
        if cfg.train.compile:
            # in place: the module's calls are compiled, its state_dict keys stay those of the networks
            self.network.compile()
        # Not a submodule (a pipeline is no nn.Module): it holds the same VAE, denoiser and schedule.
        self.pipeline = PIPELINES[self.stage](
            vae=self.vae, denoiser=self.network, scheduler=self.noise_scheduler, hr_size=cfg.data.hr_size,
            scale=cfg.data.scale, conditioning=cfg.model.conditioning, sampler=cfg.sampler,
            training_config=as_plain(cfg), lr_rgb=cfg.data.get("lr_rgb"))
        self.validation_sampler = with_overrides(cfg, {"sampler.nfe": cfg.train.val_nfe}).sampler
        self.finish_init()

    # ------------------------------------------------------------------------------ construction
    def on_fit_start(self) -> None:
        self._latent_cache_start = dataclasses.replace(latent_cache.stats)

    def on_fit_end(self) -> None:
        start, now = getattr(self, "_latent_cache_start", latent_cache.CacheStats()), latent_cache.stats
        if self.global_rank == 0:
            log.info(latent_cache.CacheStats(*(getattr(now, f.name) - getattr(start, f.name)
                                               for f in dataclasses.fields(now))).line())

    def configure_vae(self, networks: dict | None) -> AutoencoderKL:
        """The frozen VAE: from stored configs (weights follow in the state dict), a local diffusers
        folder (`model.vae.pretrained`), or the autoencoder stage's checkpoint (`init.vae_ckpt`)."""
        cfg = self.cfg
        if networks is not None:
            vae = AutoencoderKL.from_config(networks["vae"])
        elif cfg.model.vae.pretrained:
            vae = load_pretrained_vae(cfg.model.vae.pretrained)
        elif cfg.init.vae_ckpt:
            from .checkpoints import load_task

            vae = load_task(cfg.init.vae_ckpt, expect_stage="autoencoder").vae
        elif self.sd_backbone() is not None and self.sd_backbone().vae is not None:
            vae = self.sd_backbone().vae
        else:
            raise UserError(f"stage={cfg.stage} needs a trained VAE: set init.vae_ckpt=<autoencoder run folder or "
                            ".ckpt> or model.vae.pretrained=<local diffusers AutoencoderKL folder>")
        if vae.config.in_channels != cfg.data.channels:
            raise UserError(f"the VAE expects {vae.config.in_channels} channels but data.channels={cfg.data.channels}")
        self.vae = vae
        self.set_latent_scale(cfg.model.vae.scaling_factor or vae.config.scaling_factor)
        return vae

    def configure_network(self, networks: dict | None) -> Denoiser:
        raise NotImplementedError

    def sd_backbone(self) -> SDBackbone | None:
        """The Stable Diffusion folder named by `model.unet.pretrained` (None for a UNet2DModel folder or
        none at all), loaded once during construction."""
        folder = self.cfg.model.unet.pretrained
        if not folder:
            return None
        if "_sd_backbone" not in self.__dict__:
            with user_errors():
                kind = pretrained_folder_kind(folder)
                self.__dict__["_sd_backbone"] = load_sd_backbone(folder) if kind != "unet2d" else None
        return self.__dict__["_sd_backbone"]

    def scheduler_config_for(self, networks: dict | None) -> dict:
        """The training noise schedule: the checkpoint's, the SD folder's (its betas and ε / v
        prediction, as SD 2.x uses), or `diffusion.*`."""
        if networks is not None and "scheduler" in networks:
            return networks["scheduler"]
        backbone = self.sd_backbone() if networks is None else None
        if backbone is not None and backbone.scheduler_config:
            return backbone.scheduler_config
        d = self.cfg.diffusion
        return {"num_train_timesteps": d.num_train_timesteps, "beta_schedule": d.beta_schedule,
                "beta_start": d.beta_start, "beta_end": d.beta_end, "prediction_type": d.prediction_type}

    def configure_trainable(self) -> None:
        """`train.trainable`: LoRA adapters or only the new inputs instead of the whole denoiser."""
        mode = self.cfg.train.trainable
        if mode == "all":
            return
        if not hasattr(self.network, "always_trainable"):
            raise UserError(f"train.trainable={mode} applies to the prior and satdiffmoe stages (a UNet denoiser); "
                            f"stage={self.stage} trains its control branch whole: use train.trainable=all")
        with user_errors():
            apply_trainable(self.network, mode, lora_rank=self.cfg.train.lora_rank,
                            target_modules=list(self.cfg.train.lora_targets))

    def network_configs(self) -> dict:
        configs = {"vae": portable_config(self.vae.config),
                   "scheduler": portable_config(self.noise_scheduler.config)}
        if getattr(self, "network", None) is not None:
            configs["denoiser"] = portable_config(self.network.config)
            configs["denoiser_class"] = type(self.network).__name__
        return configs

    def stored_denoiser(self, networks: dict) -> Denoiser | None:
        """The denoiser rebuilt from a checkpoint's configs (None for checkpoints from before
        models/denoisers.py, which each stage reads from their older keys)."""
        if "denoiser" not in networks:
            return None
        return DENOISERS[networks.get("denoiser_class", self.default_denoiser)].from_config(networks["denoiser"])

    @property
    def scheduler_config(self) -> dict:
        return dict(self.noise_scheduler.config)

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        return self.pipeline.latent_shape

    @property
    def cond_channels(self) -> int:
        """Channels of the LR condition (pipelines/base.py `condition_image`): latent channels, the LR's
        bands resized to the latent grid, or (multiband) every LR band at the HR size."""
        conditioning = self.cfg.model.conditioning
        if conditioning == "latent":
            return self.vae.config.latent_channels
        return lr_band_count(self.cfg.data) if conditioning == "multiband" else self.cfg.data.channels

    @property
    def condition_embedding_widths(self) -> tuple[int, ...]:
        """Widths of a condition embedding that brings the condition onto the latent grid: one level
        when it already is there, log2(VAE factor) + 1 for a multiband LR at HR size (SD ControlNet's)."""
        if self.cfg.model.conditioning != "multiband":
            return (32,)
        return default_widths(downsampling_factor(self.vae))

    # ----------------------------------------------------------------------------------- latents
    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None,
               sample: bool = True) -> torch.Tensor:
        images = images.to(self.vae.dtype)
        if self.cfg.train.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        posterior = encode_posterior(self.vae, images)  # frozen VAE: each image encoded once (latent_cache.py)
        latents = posterior.sample(generator) if sample else posterior.mode()
        return latents * self.latent_scale

    def condition_image(self, lr: torch.Tensor) -> torch.Tensor:
        return self.pipeline.condition_image(lr)

    # ------------------------------------------------------------------------ subclass interface
    def training_condition(self, batch: dict[str, Any], generator: torch.Generator) -> tuple[Cond, torch.Tensor | None]:
        """(cond, dt) for one branch per scene (rows = scenes)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------- training
    def step_generator(self, batch_idx: int, salt: int = 0) -> torch.Generator:
        """Noise, timesteps and dropout drawn from (seed, step, batch, rank): a resumed run draws
        exactly what the uninterrupted run would have drawn."""
        seed = (self.cfg.seed * 1_000_003 + self.global_step * 10_007 + batch_idx * 101
                + self.global_rank * 7 + salt) % (2**63)
        return torch.Generator(device=self.device).manual_seed(seed)

    def diffusion_loss(self, batch: dict[str, Any], generator: torch.Generator, dropout: float) -> torch.Tensor:
        z0 = self.encode(batch["hr"], generator)
        cond, dt = self.training_condition(batch, generator)
        rows = z0.shape[0]
        if dropout > 0 and self.uses_condition_dropout:
            # the denoiser's own dropout rule, the one guidance uses at sampling (models/denoisers.py)
            drop = torch.rand(rows, generator=generator, device=self.device) < dropout
            cond, dt = self.network.drop_condition(cond, dt, drop)
        noise = torch.randn(z0.shape, generator=generator, device=self.device, dtype=z0.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (rows,), generator=generator,
                          device=self.device)
        z_t = self.noise_scheduler.add_noise(z0, noise, t)
        if self.prediction_type == "v_prediction":
            target = self.noise_scheduler.get_velocity(z0, noise, t)
        else:
            target = noise
        prediction = self.network(z_t, t, cond, dt)
        return F.mse_loss(prediction.float(), target.float())

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.diffusion_loss(batch, self.step_generator(batch_idx), self.cfg.model.cond_dropout)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["hr"].shape[0])
        return loss

    # -------------------------------------------------------------------------------- validation
    def sample(self, batch: dict[str, Any], sampler_cfg: Any = None, generator: torch.Generator | None = None):
        """Sample HR images for a datamodule batch through the pipeline -> `SRPipelineOutput`."""
        return self.pipeline.sample(batch, sampler_cfg, generator)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        size = batch["hr"].shape[0]
        # fixed noise per validation scene: curves move because the model does, not the noise, and a
        # scene's sample does not depend on its rank or batch (sampling/noise.py)
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.seed + batch_idx)
        loss = self.diffusion_loss(batch, generator, dropout=0.0)
        output = self.sample(batch, self.validation_sampler, scene_generators(self.cfg.seed, batch["key"], self.device))
        hr = batch["hr"]
        self.val_loss.update(loss.detach(), weight=size)
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=size)
        self.log_fidelity(output.image, hr)
        if batch_idx == 0:
            first_lr = bicubic_upsample(lr_rgb_view(batch, self.cfg.data.get("lr_rgb"))["lr"][:, 0], hr.shape[-1])
            self.log_grid("val/samples", [first_lr, output.image, hr],
                          caption="bicubic LR[0] | sample | HR")
