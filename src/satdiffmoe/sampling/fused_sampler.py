"""The SatDiffMoE fused sampler: N reverse-diffusion branches pulled onto one consensus.

SatDiffMoE (arXiv 2406.10225), step t (k = step index, all B·N branch rows batched into one denoiser call):

    eps_i = denoise(z_t^i, t, c_i, dt_i)                  (v -> eps; classifier-free guidance optional)
    x0_i  = (z_t^i - sigma_t eps_i) / alpha_t             Tweedie estimate of branch i
    fusion step (k % fusion_every == 0, and always the last step):
        x0_bar = fuse_estimates({x0_i : i kept})          sampling/consensus.py (`fusion_drop` drops some)
        x0_i   = (1 - pull) x0_i + pull x0_bar
        d_i    = (z_t^i - alpha_t x0_i) / sigma_t         `eps_after_fusion=rederive` (default)
               | eps_i                                    `eps_after_fusion=keep` (DDS-style)
        d_i    = sqrt(1 - r²) d_i + r xi                  `renoise=r` (not at the last step)
        z_t^i  = alpha_t x0_i + sigma_t d_i               (= z_t^i itself for rederive without renoise)
    z_prev^i = scheduler.step(d_i, t, z_t^i)              diffusers DDIM or DPM-Solver++

The diffusers scheduler owns the timestep grid, the alphas and the update. It is always built with
`prediction_type="epsilon"`, and after fusion it is handed a state and an epsilon from which it
recovers exactly the fused x0: (z - sigma d)/alpha = x0_i. DDIM (eta = 0) then computes
z_prev = alpha_prev x0_i + sigma_prev d_i. Handing it only a new epsilon with the old state (the
earlier code) made it integrate x0_i + (sigma/alpha)(eps_rederived - d_i) instead: with re-noising a
drift that inflated the sample std of an exact Gaussian model to 1.37 (tests/sampling/test_fusion_update.py).

DPM-Solver++ (2M) takes a finite difference over its stored data predictions (`model_outputs`),
which would read a fusion jump x0_bar - x0_i as curvature of the trajectory, at the fusion step and
at the step after it. Around every fusion step `_dpm_step` therefore shifts the stored history by the
jump (the update uses the fused level with the branch's own slope) and afterwards stores the
branch's raw model estimate, so a jump never enters a difference; without fusion (or with branches
that agree) it is diffusers' own multistep update, bit for bit. A jump of the state itself
(`eps_after_fusion: keep`, re-noising) leaves no history worth shifting: the solver restarts at
first order for that step and the next.

The timestep grid is `timestep_spacing` (leading | trailing | linspace) by DDIM's rule for both
schedulers, and every output says which timesteps it sampled. Randomness is drawn per scene and
per (scene, branch) row (sampling/noise.py), so a scene's noise does not depend on its batch or on N.

Two deliberate scheduler settings: `set_alpha_to_one=True` (the last DDIM step lands on ᾱ = 1 and
returns the clean estimate, so the output is D(x0_bar) and plain DDIM agree) and no sample clipping
(clipping to [-1, 1] is meaningless for latents; decoded images are clamped instead).

The uncertainty map (`sampler.uncertainty`; most options a spread of the branches' estimates before
fusion): sampling/uncertainty.py defines each option (`texture`, the default, and `latent` cost nothing; `pixel`
over earlier fusion steps decodes).

With N = 1, or fusion off (`fusion_every` null/0), every branch is plain conditional DDIM. With
fusion off the returned image is the mean of the branches' decoded images ("late fusion").
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from ..errors import UserError
from .config import SamplerConfig
from .consensus import FusionContext, fuse_estimates
from .noise import BranchNoise, GeneratorLike
from .uncertainty import BranchSpread

log = logging.getLogger(__name__)

Cond = torch.Tensor | dict[str, torch.Tensor] | None
Denoiser = Callable[[torch.Tensor, torch.Tensor, Cond, torch.Tensor], torch.Tensor]
# (cond, dt, drop) -> (cond, dt) with the rows where `drop` is True made unconditional: a task's
# `drop_condition`, the same function its training dropout uses (training/base.py)
Uncondition = Callable[[Cond, torch.Tensor, torch.Tensor], tuple[Cond, torch.Tensor | None]]


@dataclass
class BranchInputs:
    """A batch as N sampling branches per scene; every tensor has leading dims B×N."""

    cond: Cond  # tensor or dict of tensors, one row per branch
    dt: torch.Tensor  # B×N days, NaN = unknown
    valid: torch.Tensor  # B×N bool, False = padding (never computed, never fused)
    lr: torch.Tensor | None = None  # B×M×C×h×w in [-1, 1] (data consistency, references)
    lr_mask: torch.Tensor | None = None  # B×M×h×w, 1 = clear pixel
    # B×M bool when the LRs are observations of the scene rather than one per branch (DiffusionSat: one
    # branch sees T frames); None: M = N and an LR counts where its branch is valid
    lr_valid: torch.Tensor | None = None


@dataclass
class SamplerOutput:
    image: torch.Tensor  # B×C×H×W in [-1, 1]: D(x0_bar) (fusion off: mean of branch images)
    uncertainty: torch.Tensor  # B×1×H×W: the `sampler.uncertainty` map (sampling/uncertainty.py)
    latent: torch.Tensor  # B×C×h×w final consensus latent
    branch_images: torch.Tensor  # B×N×C×H×W: D(x0_i) of the final step before fusion (0 on padding)
    nfe: int  # denoiser evaluations per branch
    timesteps: list[int] = dataclasses.field(default_factory=list)  # the grid sampled, first to last


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


def _stack_rows(first: Cond, second: Cond) -> Cond:
    if first is None or second is None:
        return None
    if isinstance(first, dict):
        return {key: torch.cat([first[key], second[key]]) for key in first}
    return torch.cat([first, second])


class FusedSampler:
    """Runs the fused reverse process for a denoiser; see the module docstring for the maths.

    `uncondition` builds the unconditional rows of classifier-free guidance from the conditional
    ones, so both go through one denoiser call; without it (a bare denoiser) the unconditional
    output is a second call with cond=None.
    """

    def __init__(self, denoise: Denoiser, scheduler_config: dict, prediction_type: str,
                 sampler_cfg: SamplerConfig | Any,
                 vae: torch.nn.Module | None = None, latent_scale: float = 1.0, progress: bool = False,
                 uncondition: Uncondition | None = None):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise UserError(f"prediction_type must be epsilon or v_prediction, got {prediction_type!r}")
        self.denoise, self.prediction_type, self.uncondition = denoise, prediction_type, uncondition
        self.scheduler_config = dict(scheduler_config)
        # typed and checked once here (sampling/config.py): no literal defaults in the loop below
        try:
            self.cfg = SamplerConfig.from_any(sampler_cfg).check()
        except ValueError as exc:  # sampler settings are the user's input: one line, exit 2 in the CLI
            raise UserError(str(exc)) from None
        self.vae, self.latent_scale, self.progress = vae, float(latent_scale), progress
        self.chunk_size = self.cfg.chunk_size
        # bf16 denoiser only: the latents, the scheduler update and the fusion stay fp32, so rounding
        # never accumulates across the NFE steps (tests/gpu/test_gpu_sampler_precision.py bounds the gap)
        self.bf16 = self.cfg.precision == "bf16"

    # ----------------------------------------------------------------------------------- scheduler
    def make_scheduler(self, device: torch.device | str | None = None):
        """The configured diffusers scheduler with its timesteps set: `timestep_spacing` places the
        `nfe` steps by DDIM's rule for both schedulers (DPM-Solver++ is handed DDIM's grid: diffusers'
        own `leading` and `linspace` differ between the two classes), so changing the solver never
        silently changes the grid."""
        kind, steps = self.cfg.scheduler, self.cfg.nfe
        ddim = DDIMScheduler.from_config(self.scheduler_config, prediction_type="epsilon", set_alpha_to_one=True,
                                         clip_sample=False, thresholding=False,
                                         timestep_spacing=self.cfg.timestep_spacing)
        ddim.set_timesteps(steps, device=device)
        if kind == "ddim":
            return ddim
        if kind == "dpm":
            dpm = DPMSolverMultistepScheduler.from_config(
                self.scheduler_config, prediction_type="epsilon", algorithm_type="dpmsolver++",
                final_sigmas_type="zero", thresholding=False)
            dpm.set_timesteps(timesteps=ddim.timesteps.tolist(), device=device)
            return dpm
        raise UserError(f"sampler.scheduler must be ddim or dpm, got {kind!r}")

    def _step(self, scheduler, eps: torch.Tensor, t: torch.Tensor, z: torch.Tensor, noise: BranchNoise) -> torch.Tensor:
        """One scheduler update of the B·N flattened rows; DDIM's eta noise comes from each row's generator."""
        if isinstance(scheduler, DDIMScheduler):
            eta = self.cfg.eta
            return scheduler.step(eps, t, z, eta=eta, generator=noise.rows if eta > 0 else None).prev_sample
        return scheduler.step(eps, t, z).prev_sample  # DPM-Solver++ (2M) draws nothing (config.check refuses eta)

    def _dpm_step(self, scheduler: DPMSolverMultistepScheduler, eps: torch.Tensor, t: torch.Tensor,
                  z: torch.Tensor, raw_x0: torch.Tensor, jump: torch.Tensor, state_jumped: bool,
                  noise: BranchNoise) -> torch.Tensor:
        """A DPM-Solver++ step at a fusion step whose fused estimate is raw_x0 + jump (rows flattened).

        diffusers' `step` shifts `model_outputs` (the stored data predictions) by one and appends the
        x0 it recovers from (z, eps), the fused one. Shifting the surviving history by the same jump
        makes its finite differences those of the branch's raw estimates; afterwards the history holds
        raw estimates again, so the next step's difference does not see the jump either.

        When the state itself jumped (`eps_after_fusion: keep`, or re-noising), the stored estimates
        belong to another trajectory, and no shift makes a difference between them meaningful: the
        solver restarts at first order for this step and the next (an empty history, as at t = T).
        """
        if state_jumped:
            _restart_multistep(scheduler)
            z_prev = self._step(scheduler, eps, t, z, noise)
            _restart_multistep(scheduler)
            return z_prev
        history = scheduler.model_outputs
        saved = list(history)
        for j in range(1, len(history)):
            if history[j] is not None:
                history[j] = history[j] + jump
        z_prev = self._step(scheduler, eps, t, z, noise)
        history[:-1] = saved[1:]
        history[-1] = raw_x0
        return z_prev

    # ------------------------------------------------------------------------------------ denoiser
    @property
    def guidance_scale(self) -> float:
        return self.cfg.guidance_scale

    @property
    def stacked_guidance(self) -> bool:
        return self.guidance_scale != 1.0 and self.uncondition is not None

    def _denoise_chunk(self, z: torch.Tensor, t: torch.Tensor, cond: Cond, dt: torch.Tensor) -> torch.Tensor:
        with torch.autocast(z.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.guidance_scale == 1.0:
                return self.denoise(z, t, cond, dt).float()
            if self.stacked_guidance:  # conditional and unconditional rows in one call
                rows = z.shape[0]
                uncond, uncond_dt = self.uncondition(cond, dt, torch.ones(rows, dtype=torch.bool, device=z.device))
                uncond_dt = dt if uncond_dt is None else uncond_dt
                both = self.denoise(torch.cat([z, z]), torch.cat([t, t]), _stack_rows(cond, uncond),
                                    torch.cat([dt, uncond_dt.to(dt.dtype)])).float()
                out, unconditional = both[:rows], both[rows:]
            else:
                out = self.denoise(z, t, cond, dt).float()
                unconditional = self.denoise(z, t, None, dt).float()
            # classifier-free guidance: eps_u + s (eps_c - eps_u)
            return unconditional + self.guidance_scale * (out - unconditional)

    def model_output(self, z: torch.Tensor, t: torch.Tensor, inputs: BranchInputs) -> torch.Tensor:
        """Denoiser output for every valid branch row of z (B×N×...), in chunks; 0 on padding.

        Stacked guidance puts 2 rows per branch into a call, so a chunk then holds chunk_size/2 branches.
        """
        rows = inputs.valid.flatten()
        z_rows = z.flatten(0, 1)[rows]
        cond = _take_rows(_flatten_branches(inputs.cond), rows)
        dt = inputs.dt.flatten()[rows].to(z.dtype)
        while True:
            chunk = max(1, self.chunk_size // 2) if self.stacked_guidance else self.chunk_size
            try:
                pieces = []
                for start in range(0, z_rows.shape[0], chunk):
                    part = slice(start, start + chunk)
                    steps = t.expand(z_rows[part].shape[0])
                    pieces.append(self._denoise_chunk(z_rows[part], steps, _take_rows(cond, part), dt[part]))
                break
            except torch.cuda.OutOfMemoryError:
                if chunk == 1:
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

    # -------------------------------------------------------------------------------------- fusion
    def _after_fusion(self, z: torch.Tensor, eps: torch.Tensor, x0: torch.Tensor, alpha: torch.Tensor,
                      sigma: torch.Tensor, last: bool, noise: BranchNoise) -> tuple[torch.Tensor, torch.Tensor]:
        """(state, epsilon) to step from, with (state - sigma epsilon)/alpha = the fused x0 exactly.

        The direction is re-derived from the state (default) or the network's own eps (`keep`,
        DDS-style); ReSample-style re-noising then replaces a fraction r of it by fresh noise xi:
        sqrt(1 - r²) d + r xi is still unit-variance noise, so alpha x0 + sigma d keeps the marginal.
        """
        mode = self.cfg.eps_after_fusion
        strength = 0.0 if last else self.cfg.renoise
        if mode == "rederive" and strength <= 0:
            return z, (z - alpha * x0) / sigma  # the state already holds the fused x0 with this epsilon
        direction = eps if mode == "keep" else (z - alpha * x0) / sigma
        if strength > 0:
            xi = noise.randn(direction.shape)
            direction = math.sqrt(max(0.0, 1.0 - strength ** 2)) * direction + strength * xi
        return alpha * x0 + sigma * direction, direction

    def _fusion_subset(self, context: FusionContext, noise: BranchNoise) -> FusionContext:
        """DiffusionDrop: each valid branch sits out this fusion with probability `fusion_drop`
        (at least one stays per scene); the dropped ones are still pulled onto the consensus."""
        drop = self.cfg.fusion_drop
        if drop <= 0:
            return context
        valid = context.valid
        scores = noise.rand()
        kept = valid & (scores >= drop)
        scores = scores.masked_fill(~valid, -1.0)
        rescue = torch.zeros_like(kept).scatter_(1, scores.argmax(1, keepdim=True), True)
        kept = torch.where(kept.any(1, keepdim=True), kept, rescue)
        return dataclasses.replace(context, valid=kept)

    def fusion_context(self, inputs: BranchInputs) -> FusionContext:
        decode = None
        if self.vae is not None:
            def decode(latent):
                return self.vae.decode(latent / self.latent_scale).sample
        return FusionContext(
            valid=inputs.valid, dt=inputs.dt, lr=inputs.lr, lr_mask=inputs.lr_mask, lr_valid=inputs.lr_valid,
            tau=self.cfg.tau, decode=decode,
            optimize_steps=self.cfg.optimize_steps,
            optimize_lr=self.cfg.optimize_lr,
            dc_weight=self.cfg.dc_weight)

    # ------------------------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, inputs: BranchInputs, latent_shape: tuple, generator: GeneratorLike = None) -> SamplerOutput:
        """Sample B scenes with N branches each; `latent_shape` = (C, h, w) of one latent. `generator`:
        one per scene (a list: each scene's noise is its own, sampling/noise.py) or one for the batch."""
        valid = inputs.valid.bool()
        if valid.dim() != 2 or not valid.any(1).all():
            raise UserError("every scene needs at least one valid LR branch (BranchInputs.valid is B×N)")
        inputs = dataclasses.replace(inputs, valid=valid)
        batch, branches = valid.shape
        device = valid.device
        fusion_every = self.cfg.fusion_every or 0
        rule = self.cfg.consensus
        pull = self.cfg.pull
        scheduler = self.make_scheduler(device)
        context = self.fusion_context(inputs)

        noise = BranchNoise(generator, batch, branches, tuple(latent_shape), self.cfg.shared_noise, device)
        z = noise.initial * scheduler.init_noise_sigma
        state_jumps = self.cfg.eps_after_fusion == "keep" or self.cfg.renoise > 0
        x0_final = x0_bar = None
        spread = BranchSpread(self.cfg.uncertainty, self.cfg.nfe, fusion_every, self.decode)
        timesteps = scheduler.timesteps
        for k, t in enumerate(tqdm(timesteps, desc="sampling", leave=False, disable=not self.progress)):
            alpha_bar = scheduler.alphas_cumprod[int(t)].to(device=device, dtype=z.dtype)
            alpha, sigma = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
            eps = self._to_epsilon(self.model_output(z, t.to(device), inputs), z, alpha, sigma)
            x0 = (z - sigma * eps) / alpha  # Tweedie estimate of every branch
            last = k == len(timesteps) - 1
            if last:
                x0_final = x0
            if not (fusion_every and (k % fusion_every == 0 or last)):
                z = self._step(scheduler, eps.flatten(0, 1), t, z.flatten(0, 1), noise).view_as(z)
                continue
            spread.add(k, x0, valid)
            x0_bar = fuse_estimates(x0, rule, self._fusion_subset(context, noise))
            fused = (1 - pull) * x0 + pull * x0_bar[:, None]
            state, direction = self._after_fusion(z, eps, fused, alpha, sigma, last, noise)
            if isinstance(scheduler, DPMSolverMultistepScheduler):
                z = self._dpm_step(scheduler, direction.flatten(0, 1), t, state.flatten(0, 1), x0.flatten(0, 1),
                                   (fused - x0).flatten(0, 1), state_jumps and not last, noise).view_as(z)
            else:
                z = self._step(scheduler, direction.flatten(0, 1), t, state.flatten(0, 1), noise).view_as(z)
        out = self._finish(z, x0_final, x0_bar if fusion_every else None, valid, spread, inputs)
        out.timesteps = [int(t) for t in timesteps]
        return out

    def _finish(self, z: torch.Tensor, x0_final: torch.Tensor, x0_bar: torch.Tensor | None,
                valid: torch.Tensor, spread: BranchSpread, inputs: BranchInputs) -> SamplerOutput:
        batch, branches = valid.shape
        rows = valid.flatten()
        weights = valid.to(z.dtype)[:, :, None, None, None]
        count = weights.sum(1)

        estimates = self.decode(x0_final.flatten(0, 1)[rows]).clamp(-1, 1)
        branch_images = estimates.new_zeros((batch * branches,) + estimates.shape[1:])
        branch_images[rows] = estimates
        branch_images = branch_images.view(batch, branches, *estimates.shape[1:])

        if x0_bar is not None:
            latent, image = x0_bar, self.decode(x0_bar).clamp(-1, 1)
        else:  # fusion off: each branch is plain DDIM; average the decoded samples
            final = self.decode(z.flatten(0, 1)[rows]).clamp(-1, 1)
            decoded = final.new_zeros((batch * branches,) + final.shape[1:])
            decoded[rows] = final
            image = (decoded.view(batch, branches, *final.shape[1:]) * weights).sum(1) / count
            latent = (z * weights).sum(1) / count
        uncertainty = spread.finish(x0_final, branch_images, valid, inputs, image)
        nfe = self.cfg.network_evaluations
        return SamplerOutput(image=image, uncertainty=uncertainty, latent=latent,
                             branch_images=branch_images, nfe=nfe)


def _restart_multistep(scheduler: DPMSolverMultistepScheduler) -> None:
    """Forget DPM-Solver++'s stored estimates: its next update is first order, as at the first step."""
    scheduler.model_outputs = [None] * len(scheduler.model_outputs)
    scheduler.lower_order_nums = 0
