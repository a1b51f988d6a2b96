"""`LatentSRPipeline`: the shared frame of every latent diffusion super-resolution pipeline.

A pipeline owns what turns user inputs into a sample, diffusers-style (`pipeline_controlnet.py`):

    components  vae (AutoencoderKL, frozen), denoiser (models/denoisers.py), scheduler (the training
                noise schedule; the sampler derives DDIM / DPM-Solver++ from its config)
    config      hr_size, scale (HR px per LR px), conditioning ("latent": E(bicubic(LR)) · scale |
                "pixel": LR resized to the latent grid), sampler (the default `SamplerConfig`, overridable
                per call), training_config (the experiment config it was trained with, so an exported
                folder still says which data, bands and radiometry it expects)

    pipe(lr, dt, lr_mask=None, gsd=None, sampler=None, generator=None) -> SRPipelineOutput

Each method says how a scene's LRs become sampling branches (`branches`); the fused sampler
(sampling/fused_sampler.py) does the rest. `save_pretrained` / `from_pretrained` are diffusers' own:
a folder with model_index.json, vae/, denoiser/, scheduler/, loadable without Lightning, plus
satdiffmoe_pipeline.py, the custom-pipeline module that `diffusers.DiffusionPipeline.from_pretrained(
folder, trust_remote_code=True)` imports for the class. `from_pretrained` refuses weights that do not
match their configs (pipelines/weights_check.py) and never runs that module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL, DiffusionPipeline, SchedulerMixin
from diffusers.utils import BaseOutput

from ..data.lr_stack import bicubic_upsample
from ..models.autoencoder import downsampling_factor
from ..models.denoisers import Denoiser
from ..models.latent_cache import encode_posterior
from ..sampling.backprojection import back_project
from ..sampling.config import SamplerConfig
from ..sampling.fused_sampler import BranchInputs, FusedSampler
from .inputs import SRInputs
from .weights_check import check_weights

CONDITIONING = ("latent", "pixel", "multiband")
# The file model_index.json names beside the class ([module, class], the Hub's custom-pipeline form).
DIFFUSERS_MODULE = "satdiffmoe_pipeline"
DIFFUSERS_MODULE_TEXT = '''"""What `diffusers.DiffusionPipeline.from_pretrained(this_folder, trust_remote_code=True)` imports
for the pipeline class that model_index.json names (needs `pip install satdiffmoe`). satdiffmoe's own
loaders never run this file."""

from {module} import {name}  # noqa: F401
'''


@dataclass
class SRPipelineOutput(BaseOutput):
    image: torch.Tensor  # B×C×H×W in [-1, 1]
    uncertainty: torch.Tensor | None  # B×1×H×W map (`sampler.uncertainty`, sampling/uncertainty.py), None without one
    branch_images: torch.Tensor | None = None  # B×N×C×H×W per-branch estimates before the last fusion
    latent: torch.Tensor | None = None  # B×C×h×w final consensus latent
    nfe: int = 0  # denoiser evaluations per branch (guidance counts twice)
    timesteps: list[int] | None = None  # the training-schedule timesteps sampled, first to last


class LatentSRPipeline(DiffusionPipeline):
    stage: str = ""  # the training stage that produces this pipeline's denoiser
    uses_lr = True  # False: an unconditional model (the prior), which `sample` cannot use
    produces_uncertainty = True
    model_cpu_offload_seq = "denoiser->vae"

    def __init__(self, vae: AutoencoderKL, denoiser: Denoiser, scheduler: SchedulerMixin, hr_size: int = 64,
                 scale: int = 4, conditioning: str = "latent", sampler: dict | None = None,
                 training_config: dict | None = None, lr_rgb: list[int] | None = None):
        super().__init__()
        if conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got {conditioning!r}")
        vae.requires_grad_(False)
        self.register_modules(vae=vae, denoiser=denoiser, scheduler=scheduler)
        self.register_to_config(hr_size=int(hr_size), scale=int(scale), conditioning=conditioning,
                                sampler=SamplerConfig.from_any(sampler).check().to_dict(),
                                training_config=training_config,
                                lr_rgb=None if lr_rgb is None else [int(i) for i in lr_rgb])

    # ----------------------------------------------------------------------------- the folder
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loading, once the folder's weights are known to fit its configs (a missing,
        unexpected or mis-shaped tensor would otherwise sample garbage with only a warning)."""
        if Path(pretrained_model_name_or_path).is_dir():
            check_weights(pretrained_model_name_or_path, skip=set(kwargs))
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """A [module, class] `_class_name` read as the class: the module is for diffusers' generic
        loader, and reading the folder through this class must not import a file from it."""
        loaded = super().load_config(*args, **kwargs)
        config = loaded[0] if isinstance(loaded, tuple) else loaded
        if isinstance(config.get("_class_name"), list):
            config["_class_name"] = config["_class_name"][-1]
        return loaded

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        folder, name = Path(save_directory), type(self).__name__
        (folder / f"{DIFFUSERS_MODULE}.py").write_text(DIFFUSERS_MODULE_TEXT.format(module=type(self).__module__,
                                                                                    name=name))
        index_path = folder / "model_index.json"
        index = json.loads(index_path.read_text())
        index["_class_name"] = [DIFFUSERS_MODULE, name]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")

    @property
    def cfg(self):
        """The validated experiment config this pipeline was trained with (None if it was not recorded)."""
        if self.config.training_config is None:
            return None
        from ..config import config_from_dict

        return config_from_dict(self.config.training_config)

    # --------------------------------------------------------------------------------- latents
    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        side = self.config.hr_size // downsampling_factor(self.vae)
        return (self.vae.config.latent_channels, side, side)

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None,
               sample: bool = False) -> torch.Tensor:
        """Images in [-1, 1] -> scaled latents (the posterior's mode, or a sample of it)."""
        posterior = encode_posterior(self.vae, images.to(self.vae.dtype))
        return (posterior.sample(generator) if sample else posterior.mode()) * self.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents.to(self.vae.dtype) / self.latent_scale).sample.clamp(-1, 1)

    def condition_image(self, lr: torch.Tensor) -> torch.Tensor:
        """LR rows (R×C×h×w) -> condition rows: the one way the LR reaches every method (SatDiffMoE,
        ControlNet, DiffusionSat), so their comparison is fair. `latent`: E(bicubic(LR))·scale; `pixel`:
        the LR resized to the latent grid; `multiband`: every LR band bicubic-upsampled to the HR size,
        which the denoiser's learned encoder (or the ControlNet's conditioning embedding) brings onto
        the latent grid (the RGB VAE cannot encode 13 bands)."""
        if self.config.conditioning == "multiband":
            return bicubic_upsample(lr, self.config.hr_size)
        if self.config.conditioning == "latent":
            return self.encode(bicubic_upsample(lr, self.config.hr_size))
        side = self.latent_shape[1]
        return F.interpolate(lr.float(), size=(side, side), mode="area")

    def consistency_lr(self, lr: torch.Tensor) -> torch.Tensor:
        """The LR bands that observe the HR's, in HR band order (`lr_rgb`): what data consistency
        compares a downsampled sample with. All of them when LR and HR share their bands."""
        return lr if self.config.lr_rgb is None else lr[:, :, list(self.config.lr_rgb)]

    # ---------------------------------------------------------------------------------- sampling
    def sampler_config(self, sampler: Any = None, **overrides: Any) -> SamplerConfig:
        """This pipeline's own sampler settings (what it was trained and evaluated with), updated by the
        keys `sampler` names (a dict or config node: only its keys; an instance: all of them) and by
        keyword overrides. An unnamed key keeps the pipeline's value, never the library default."""
        settings = dict(self.config.sampler)
        settings.update(SamplerConfig.named_settings(sampler))
        settings.update(overrides)
        return SamplerConfig.from_any(settings).check(self.scheduler.config.num_train_timesteps)

    def branches(self, inputs: SRInputs, sampler: SamplerConfig) -> BranchInputs:
        """How a scene's LRs become the sampler's N branches (one method's choice)."""
        raise NotImplementedError

    def adjust_sampler(self, sampler: SamplerConfig) -> SamplerConfig:
        """A method's own reading of the sampler settings (ControlNet's late fusion turns fusion off)."""
        return sampler

    def fused_sampler(self, sampler: SamplerConfig, progress: bool = False) -> FusedSampler:
        return FusedSampler(self.denoiser, self.scheduler.config, self.scheduler.config.prediction_type, sampler,
                            vae=self.vae, latent_scale=self.latent_scale, progress=progress,
                            uncondition=self.denoiser.drop_condition)

    @torch.no_grad()
    def __call__(self, lr: Any, dt: Any = None, lr_mask: Any = None, lr_valid: Any = None, gsd: Any = None,
                 lr_doy: Any = None, lr_cloud: Any = None, *, sampler: Any = None,
                 generator: torch.Generator | list[torch.Generator] | None = None, progress: bool = False,
                 **sampler_overrides: Any) -> SRPipelineOutput:
        """Super-resolve B scenes. `lr` is in [-1, 1] (B×N×C×h×w, one scene's N×C×h×w, or a list of
        C×h×w); sampler settings come from this pipeline's config, `sampler=` and keyword overrides
        (e.g. `nfe=25, fusion_every=5`). `generator`: a list of B (one per scene, each scene's noise
        then its own whatever the batch; `sampling.noise.scene_generators`) or one for the batch."""
        inputs = lr if isinstance(lr, SRInputs) else SRInputs.build(
            lr, dt, lr_mask, lr_valid, gsd, lr_doy, lr_cloud)
        inputs = inputs.to(self.device)
        settings = self.adjust_sampler(self.sampler_config(sampler, **sampler_overrides))
        branches = self.branches(inputs, settings)
        out = self.fused_sampler(settings, progress).sample(branches, self.latent_shape, generator)
        if settings.backprojection and branches.lr is not None:
            observed = branches.valid if branches.lr_valid is None else branches.lr_valid
            out.image = back_project(out.image, branches.lr, observed, branches.lr_mask, settings.backprojection)
        return SRPipelineOutput(image=out.image, uncertainty=out.uncertainty, branch_images=out.branch_images,
                                latent=out.latent, nfe=out.nfe, timesteps=out.timesteps)

    def sample(self, batch: dict[str, Any], sampler: Any = None,
               generator: torch.Generator | list[torch.Generator] | None = None) -> SRPipelineOutput:
        """A `SatDataModule` batch through the pipeline (what validation, `evaluate` and sweeps call;
        they pass one generator per scene, seeded by the scene's key)."""
        return self(SRInputs.from_batch(batch), sampler=sampler, generator=generator)

    def parameters(self):
        """Every component's parameters (the evaluation's parameter counts and device)."""
        for module in (self.vae, self.denoiser):
            yield from module.parameters()
