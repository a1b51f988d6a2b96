"""`SamplerConfig`: every knob of the fused sampler, its default and its valid range, in one place.

The experiment schema embeds it as `sampler:` (config/schema.py), `FusedSampler` and the pipelines
take it typed (`SamplerConfig.from_any` accepts the DictConfig of a loaded experiment, a plain dict
or an instance), and `check` is the one validation both config loading and the sampler run. The
consensus rule names come from the rule registry (`sampling/consensus.py`), so adding a rule is one
function and one registry entry.

No torch at import time: config loading imports this module.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

SCHEDULERS = ("ddim", "dpm")
EPS_AFTER_FUSION = ("rederive", "keep")
PRECISIONS = ("32", "bf16")
# diffusers' `timestep_spacing`: how `nfe` steps are placed on the training schedule (Lin et al. 2024,
# "Common Diffusion Noise Schedules and Sample Steps are Flawed", table 2). `leading` at nfe 10 of 1000
# starts at t = 900, where the model never saw pure noise; `trailing` starts at t = 999.
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")
UNCERTAINTY_MAPS = ("latent", "pixel", "latent+lr", "pixel+lr", "texture")  # defined in sampling/uncertainty.py


@dataclass
class SamplerConfig:
    nfe: int = 50  # UNet evaluations per branch (DDIM steps)
    scheduler: str = "ddim"  # ddim | dpm (DPM-Solver++ via diffusers)
    timestep_spacing: str = "leading"  # leading | trailing | linspace, for either scheduler (README "Sampling")
    fusion_every: int | None = 5  # fuse every k steps; null/0 = off (independent branches)
    consensus: str = "mean"  # mean | time_weighted | mask_weighted | optimized (sampling/consensus.py)
    tau: float = 180.0  # days; time_weighted w_i ∝ exp(-|Δt_i|/τ)
    pull: float = 1.0  # eta_pull: 1 = every branch takes the consensus
    eta: float = 0.0  # DDIM eta
    renoise: float = 0.0  # ReSample-style stochastic re-noising strength after fusion (0 = off)
    eps_after_fusion: str = "rederive"  # rederive: eps = (z - alpha x0_bar)/sigma | keep: the network's eps (DDS)
    fusion_drop: float = 0.0  # DiffusionDrop: each branch sits out a fusion with this probability
    shared_noise: bool = True  # same initial noise for every branch
    guidance_scale: float = 1.0  # classifier-free guidance (1 = off)
    optimize_steps: int = 5  # K for consensus=optimized
    optimize_lr: float = 0.1
    dc_weight: float = 1.0  # λ, the LR data-consistency weight
    backprojection: int = 0  # K pixel-space back-projections of the LR error after decoding (sampling/backprojection.py)
    chunk_size: int = 64  # max (scene × branch) rows per UNet call
    late_fusion: bool = False  # baselines: average per-LR samples instead of the nearest LR
    precision: str = "32"  # 32 | bf16: denoiser calls under bf16 autocast; latents, scheduler, VAE stay fp32
    # the map's definition: texture | latent | pixel | latent+lr | pixel+lr (sampling/uncertainty.py);
    # texture ranks the error best on the quickstart's validation split (README "Evaluation and metrics")
    uncertainty: str = "texture"

    @classmethod
    def named_settings(cls, value: Any = None) -> dict[str, Any]:
        """The settings `value` itself names, defaults not filled in: every field of an instance, the
        keys of a dict or an OmegaConf node, nothing for None. What may override another config's."""
        if value is None:
            return {}
        if isinstance(value, cls):
            return dataclasses.asdict(value)
        if not isinstance(value, dict):
            from omegaconf import OmegaConf

            value = OmegaConf.to_container(value, resolve=True)
        return dict(value)

    @classmethod
    def from_any(cls, value: Any = None, **overrides: Any) -> SamplerConfig:
        """An instance from None (defaults), a dict, an OmegaConf node or an instance; keys outside the
        dataclass are an error naming them. Unnamed keys get the defaults: to update another config,
        merge `named_settings` into it instead."""
        if isinstance(value, cls) and not overrides:
            return value
        fields = cls.named_settings(value)
        fields.update(overrides)
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown sampler setting(s) {', '.join(unknown)}")
        # OmegaConf's structured merge type-checks and converts ("25" -> 25), as config loading does
        from omegaconf import OmegaConf
        from omegaconf.errors import OmegaConfBaseException

        try:
            return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls), fields))
        except OmegaConfBaseException as exc:
            raise ValueError(f"sampler.{getattr(exc, 'full_key', '')}: {str(exc).splitlines()[0]}") from None

    def replace(self, **changes: Any) -> SamplerConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def fuses(self) -> bool:
        return bool(self.fusion_every)

    @property
    def calls_per_step(self) -> int:
        """Denoiser evaluations per step: classifier-free guidance adds the unconditional one."""
        return 2 if self.guidance_scale != 1.0 else 1

    @property
    def network_evaluations(self) -> int:
        """The real NFE per branch (what run names and eval JSONs report)."""
        return self.nfe * self.calls_per_step

    def check(self, num_train_timesteps: int | None = None) -> SamplerConfig:
        """Raise ValueError naming the first setting outside its domain (with the fix); return self."""
        from .consensus import CONSENSUS_RULES

        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"sampler.{f.name}={value} is not a finite number; give a finite value")
        rules = [
            (self.nfe >= 1, f"sampler.nfe must be >= 1, got {self.nfe}"),
            (num_train_timesteps is None or self.nfe <= num_train_timesteps,
             f"sampler.nfe={self.nfe} exceeds diffusion.num_train_timesteps={num_train_timesteps}"),
            (self.scheduler in SCHEDULERS, f"sampler.scheduler must be ddim or dpm, got {self.scheduler}"),
            (self.timestep_spacing in TIMESTEP_SPACINGS,
             f"sampler.timestep_spacing must be one of {', '.join(TIMESTEP_SPACINGS)}, got {self.timestep_spacing}"),
            (self.fusion_every is None or self.fusion_every >= 0,
             f"sampler.fusion_every must be >= 1 (or null/0 for no fusion), got {self.fusion_every}"),
            (self.consensus in CONSENSUS_RULES,
             f"sampler.consensus '{self.consensus}' is not one of {tuple(CONSENSUS_RULES)}"),
            (self.tau > 0, f"sampler.tau must be > 0 days, got {self.tau}"),
            (0.0 <= self.pull <= 1.0, f"sampler.pull must be in [0, 1], got {self.pull}"),
            (self.eta >= 0.0, f"sampler.eta must be >= 0, got {self.eta}"),
            # DPM-Solver++ (2M) is deterministic: an eta would be ignored without a word
            (self.eta == 0.0 or self.scheduler == "ddim",
             f"sampler.eta={self.eta} needs sampler.scheduler=ddim (DPM-Solver++ has no eta); set sampler.eta=0"),
            # sqrt(1 - r²) d + r xi is unit-variance noise only for r <= 1
            (0.0 <= self.renoise <= 1.0, f"sampler.renoise must be in [0, 1] (0 = off), got {self.renoise}"),
            (self.eps_after_fusion in EPS_AFTER_FUSION,
             f"sampler.eps_after_fusion must be one of {', '.join(EPS_AFTER_FUSION)}, got {self.eps_after_fusion}"),
            (0 <= self.fusion_drop < 1, f"sampler.fusion_drop must be in [0, 1), got {self.fusion_drop}"),
            (self.backprojection >= 0, f"sampler.backprojection must be >= 0 steps (0 = off), got {self.backprojection}"),
            (self.guidance_scale >= 0, f"sampler.guidance_scale must be >= 0 (1 = off), got {self.guidance_scale}"),
            (self.optimize_steps >= 0, f"sampler.optimize_steps must be >= 0, got {self.optimize_steps}"),
            (self.optimize_lr > 0, f"sampler.optimize_lr must be > 0, got {self.optimize_lr}"),
            (self.dc_weight >= 0, f"sampler.dc_weight must be >= 0, got {self.dc_weight}"),
            (self.chunk_size >= 1, "sampler.chunk_size must be >= 1"),
            (self.precision in PRECISIONS, f"sampler.precision must be 32 or bf16, got {self.precision}"),
            (self.uncertainty in UNCERTAINTY_MAPS,
             f"sampler.uncertainty must be one of {', '.join(UNCERTAINTY_MAPS)}, got {self.uncertainty}"),
        ]
        for ok, message in rules:
            if not ok:
                raise ValueError(message)
        return self
