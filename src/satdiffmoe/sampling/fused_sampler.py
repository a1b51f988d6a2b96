"""The SatDiffMoE fused sampler: N reverse-diffusion branches pulled onto one consensus.

DESIGN.md section 5, step t (k = step index, all B·N branch rows batched into one denoiser call):

    eps_i = denoise(z_t^i, t, c_i, dt_i)                  (v -> eps; classifier-free guidance optional)
    x0_i  = (z_t^i - sigma_t eps_i) / alpha_t             Tweedie estimate of branch i
    fusion step (k % fusion_every == 0, and always the last step):
        x0_bar = fuse_estimates({x0_i})                   sampling/consensus.py
        x0_i   = (1 - pull) x0_i + pull x0_bar
        eps_i  = (z_t^i - alpha_t x0_i) / sigma_t         (+ optional re-noising, see `_renoise`)
    z_prev^i = scheduler.step(eps_i, t, z_t^i)            diffusers DDIM or DPM-Solver++

The diffusers scheduler owns the timestep grid, the alphas and the update. It is always built with
`prediction_type="epsilon"` and handed the epsilon that is consistent with the (fused) x0, because
both DDIM and DPM-Solver++ recompute x0 from the model output. DPM-Solver++ keeps a history of those
x0 (data prediction), so it integrates the fused estimates exactly, like DDIM.

Two deliberate scheduler settings: `set_alpha_to_one=True` (the last DDIM step lands on ᾱ = 1 and
returns the clean estimate, so the output is D(x0_bar) and plain DDIM agree) and no sample clipping
(clipping to [-1, 1] is meaningless for latents; decoded images are clamped instead).

With N = 1, or fusion off (`fusion_every` null/0), every branch is plain conditional DDIM. With
fusion off the returned image is the mean of the branches' decoded images ("late fusion").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from ..errors import UserError
from .consensus import FusionContext, fuse_estimates

log = logging.getLogger(__name__)

Cond = torch.Tensor | dict[str, torch.Tensor] | None
Denoiser = Callable[[torch.Tensor, torch.Tensor, Cond, torch.Tensor], torch.Tensor]


@dataclass
class BranchInputs:
    """A batch as N sampling branches per scene; every tensor has leading dims B×N."""

    cond: Cond  # tensor or dict of tensors, one row per branch
    dt: torch.Tensor  # B×N days, NaN = unknown
    valid: torch.Tensor  # B×N bool, False = padding (never computed, never fused)
    lr: torch.Tensor | None = None  # B×N×C×h×w in [-1, 1] (data consistency, references)
    lr_mask: torch.Tensor | None = None  # B×N×h×w, 1 = clear pixel


@dataclass
class SamplerOutput:
    image: torch.Tensor  # B×C×H×W in [-1, 1]: D(x0_bar) (fusion off: mean of branch images)
    uncertainty: torch.Tensor  # B×1×H×W: per-pixel std of D(x0_i) across valid branches, channel mean
    latent: torch.Tensor  # B×C×h×w final consensus latent
    branch_images: torch.Tensor  # B×N×C×H×W: D(x0_i) of the final step before fusion (0 on padding)
    nfe: int  # denoiser evaluations per branch


def _take_rows(cond: Cond, rows: torch.Tensor | slice) -> Cond:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {key: value[rows] for key, value in cond.items()}
    return cond[rows]


def _flatten_branches(cond: Cond) -> Cond:
    if cond is None:
        return None
    if isinstance(cond, dict):
        return {key: value.flatten(0, 1) for key, value in cond.items()}
    return cond.flatten(0, 1)


def _cfg_value(cfg: Any, key: str, default: Any = None) -> Any:
    return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


class FusedSampler:
    """Runs the fused reverse process for a denoiser; see the module docstring for the maths."""

    def __init__(self, denoise: Denoiser, scheduler_config: dict, prediction_type: str, sampler_cfg: Any,
                 vae: torch.nn.Module | None = None, latent_scale: float = 1.0, progress: bool = False):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"prediction_type must be epsilon or v_prediction, got {prediction_type!r}")
        self.denoise, self.prediction_type = denoise, prediction_type
        self.scheduler_config = dict(scheduler_config)
        self.cfg, self.vae, self.latent_scale, self.progress = sampler_cfg, vae, float(latent_scale), progress
        self.chunk_size = int(_cfg_value(sampler_cfg, "chunk_size", 64))
        # bf16 denoiser only: the latents, the scheduler update and the fusion stay fp32, so rounding
        # never accumulates across the NFE steps (tests/gpu/test_sampler_precision.py bounds the gap)
        self.bf16 = str(_cfg_value(sampler_cfg, "precision", "32")) == "bf16"

    @classmethod
    def for_task(cls, task: Any, sampler_cfg: Any, progress: bool = False) -> FusedSampler:
        """A sampler over a `training.base.DiffusionTask` (its denoiser, schedule, VAE)."""
        return cls(task.denoise, task.scheduler_config, task.prediction_type, sampler_cfg,
                   vae=task.vae, latent_scale=task.latent_scale, progress=progress)

    # ----------------------------------------------------------------------------------- scheduler
    def make_scheduler(self):
        kind = _cfg_value(self.cfg, "scheduler", "ddim")
        if kind == "ddim":
            return DDIMScheduler.from_config(self.scheduler_config, prediction_type="epsilon",
                                             set_alpha_to_one=True, clip_sample=False, thresholding=False)
        if kind == "dpm":
            return DPMSolverMultistepScheduler.from_config(
                self.scheduler_config, prediction_type="epsilon", algorithm_type="dpmsolver++",
                final_sigmas_type="zero", thresholding=False)
        raise UserError(f"sampler.scheduler must be ddim or dpm, got {kind!r}")

    def _step(self, scheduler, eps: torch.Tensor, t: torch.Tensor, z: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        if isinstance(scheduler, DDIMScheduler):
            eta = float(_cfg_value(self.cfg, "eta", 0.0))
            return scheduler.step(eps, t, z, eta=eta, generator=generator if eta > 0 else None).prev_sample
        return scheduler.step(eps, t, z, generator=generator).prev_sample

    # ------------------------------------------------------------------------------------ denoiser
    @property
    def guidance_scale(self) -> float:
        return float(_cfg_value(self.cfg, "guidance_scale", 1.0))

    def _denoise_chunk(self, z: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.denoise(z, t, cond, dt).float()
            if self.guidance_scale != 1.0:  # classifier-free guidance: eps_u + s (eps_c - eps_u)
                uncond = self.denoise(z, t, None, dt).float()
                out = uncond + self.guidance_scale * (out - uncond)
        return out

    def model_output(self, z: torch.Tensor, t: torch.Tensor, inputs: BranchInputs) -> torch.Tensor:
        """Denoiser output for every valid branch row of z (B×N×...), in chunks; 0 on padding."""
        rows = inputs.valid.flatten()
        z_rows = z.flatten(0, 1)[rows]
        cond = _take_rows(_flatten_branches(inputs.cond), rows)
        dt = inputs.dt.flatten()[rows].to(z.dtype)
        while True:
            try:
                pieces = []
                for start in range(0, z_rows.shape[0], self.chunk_size):
                    part = slice(start, start + self.chunk_size)
                    steps = t.expand(z_rows[part].shape[0])
                    pieces.append(self._denoise_chunk(z_rows[part], steps, _take_rows(cond, part), dt[part]))
                break
            except torch.cuda.OutOfMemoryError:
                if self.chunk_size == 1:
                    raise
                self.chunk_size = max(1, self.chunk_size // 2)  # memory-aware: retry with smaller calls
                log.warning("out of GPU memory; retrying with sampler.chunk_size=%d", self.chunk_size)
                torch.cuda.empty_cache()
        out = torch.zeros_like(z.flatten(0, 1))
        out[rows] = torch.cat(pieces).to(z.dtype)
        return out.view_as(z)

    def _to_epsilon(self, output: torch.Tensor, z: torch.Tensor, alpha: torch.Tensor,
                    sigma: torch.Tensor) -> torch.Tensor:
        if self.prediction_type == "v_prediction":  # v = alpha eps - sigma x0
            return alpha * output + sigma * z
        return output

    # ------------------------------------------------------------------------------------- decoder
    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latent rows -> images (vae None: latent space is image space)."""
        if self.vae is None:
            return latent
        images = [self.vae.decode(part / self.latent_scale).sample
                  for part in latent.split(self.chunk_size)]
        return torch.cat(images)

    # ------------------------------------------------------------------------------------ sampling
    def _initial_noise(self, shape: tuple, shared: bool, generator, device, dtype) -> torch.Tensor:
        batch, branches = shape[:2]
        if shared:  # same noise for every branch of a scene (identical LRs -> identical branches)
            noise = randn_tensor((batch, 1) + shape[2:], generator=generator, device=device, dtype=dtype)
            return noise.expand(shape).clone()
        return randn_tensor(shape, generator=generator, device=device, dtype=dtype)

    def _renoise(self, eps: torch.Tensor, generator) -> torch.Tensor:
        """ReSample-style stochastic re-noising: replace a fraction r of the noise direction.

        z_t = alpha x0 + sigma eps keeps its marginal N(alpha x0, sigma²) because
        sqrt(1 - r²) eps + r xi is still unit-variance noise for fresh xi.
        """
        strength = float(_cfg_value(self.cfg, "renoise", 0.0))
        if strength <= 0:
            return eps
        xi = randn_tensor(eps.shape, generator=generator, device=eps.device, dtype=eps.dtype)
        return math.sqrt(max(0.0, 1.0 - strength ** 2)) * eps + strength * xi

    def fusion_context(self, inputs: BranchInputs) -> FusionContext:
        decode = None
        if self.vae is not None:
            def decode(latent):
                return self.vae.decode(latent / self.latent_scale).sample
        return FusionContext(
            valid=inputs.valid, dt=inputs.dt, lr=inputs.lr, lr_mask=inputs.lr_mask,
            tau=float(_cfg_value(self.cfg, "tau", 180.0)), decode=decode,
            optimize_steps=int(_cfg_value(self.cfg, "optimize_steps", 5)),
            optimize_lr=float(_cfg_value(self.cfg, "optimize_lr", 0.1)),
            dc_weight=float(_cfg_value(self.cfg, "dc_weight", 1.0)))

    @torch.no_grad()
    def sample(self, inputs: BranchInputs, latent_shape: tuple, generator: torch.Generator | None = None
               ) -> SamplerOutput:
        """Sample B scenes with N branches each; `latent_shape` = (C, h, w) of one latent."""
        valid = inputs.valid.bool()
        if valid.dim() != 2 or not valid.any(1).all():
            raise UserError("every scene needs at least one valid LR branch (BranchInputs.valid is B×N)")
        inputs = BranchInputs(inputs.cond, inputs.dt, valid, inputs.lr, inputs.lr_mask)
        batch, branches = valid.shape
        device = valid.device
        steps = int(_cfg_value(self.cfg, "nfe", 50))
        fusion_every = int(_cfg_value(self.cfg, "fusion_every", 0) or 0)
        rule = _cfg_value(self.cfg, "consensus", "mean")
        pull = float(_cfg_value(self.cfg, "pull", 1.0))
        scheduler = self.make_scheduler()
        scheduler.set_timesteps(steps, device=device)
        context = self.fusion_context(inputs)

        shape = (batch, branches) + tuple(latent_shape)
        z = self._initial_noise(shape, bool(_cfg_value(self.cfg, "shared_noise", True)), generator, device,
                                torch.float32) * scheduler.init_noise_sigma
        x0_final = x0_bar = None
        timesteps = scheduler.timesteps
        for k, t in enumerate(tqdm(timesteps, desc="sampling", leave=False, disable=not self.progress)):
            alpha_bar = scheduler.alphas_cumprod[int(t)].to(device=device, dtype=z.dtype)
            alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
            eps = self._to_epsilon(self.model_output(z, t.to(device), inputs), z, alpha, sigma)
            x0 = (z - sigma * eps) / alpha  # Tweedie estimate of every branch
            last = k == len(timesteps) - 1
            if last:
                x0_final = x0
            if fusion_every and (k % fusion_every == 0 or last):
                x0_bar = fuse_estimates(x0, rule, context)
                x0 = (1 - pull) * x0 + pull * x0_bar[:, None]
                eps = (z - alpha * x0) / sigma
                if not last:
                    eps = self._renoise(eps, generator)
            z = self._step(scheduler, eps.flatten(0, 1), t, z.flatten(0, 1), generator).view_as(z)
        return self._finish(z, x0_final, x0_bar if fusion_every else None, valid, steps)

    def _finish(self, z: torch.Tensor, x0_final: torch.Tensor, x0_bar: torch.Tensor | None,
                valid: torch.Tensor, steps: int) -> SamplerOutput:
        batch, branches = valid.shape
        rows = valid.flatten()
        weights = valid.to(z.dtype)[:, :, None, None, None]
        count = weights.sum(1)

        estimates = self.decode(x0_final.flatten(0, 1)[rows]).clamp(-1, 1)
        branch_images = estimates.new_zeros((batch * branches,) + estimates.shape[1:])
        branch_images[rows] = estimates
        branch_images = branch_images.view(batch, branches, *estimates.shape[1:])
        spread_mean = (branch_images * weights).sum(1) / count
        variance = (((branch_images - spread_mean[:, None]) ** 2) * weights).sum(1) / count
        uncertainty = variance.sqrt().mean(1, keepdim=True)

        if x0_bar is not None:
            latent, image = x0_bar, self.decode(x0_bar).clamp(-1, 1)
        else:  # fusion off: each branch is plain DDIM; average the decoded samples
            final = self.decode(z.flatten(0, 1)[rows]).clamp(-1, 1)
            decoded = final.new_zeros((batch * branches,) + final.shape[1:])
            decoded[rows] = final
            image = (decoded.view(batch, branches, *final.shape[1:]) * weights).sum(1) / count
            latent = (z * weights).sum(1) / count
        nfe = steps * (2 if self.guidance_scale != 1.0 else 1)
        return SamplerOutput(image=image, uncertainty=uncertainty, latent=latent,
                             branch_images=branch_images, nfe=nfe)
