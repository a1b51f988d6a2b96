"""`LatentSRPipeline`: the shared frame of every latent diffusion super-resolution pipeline.

A pipeline owns what turns user inputs into a sample, diffusers-style (`pipeline_controlnet.py`):

    components  vae (AutoencoderKL, frozen), denoiser (models/denoisers.py), scheduler (the training
                noise schedule; the sampler derives DDIM / DPM-Solver++ from its config)
    config      hr_size, scale (HR px per LR px), conditioning ("latent": E(bicubic(LR)) · scale |
                "pixel": LR resized to the latent grid), sampler (the default `SamplerConfig`, overridable
                per call), training_config (the experiment config it was trained with, so an exported
                folder still says which data, bands and radiometry it expects)

    pipe(lr, dt, lr_mask=None, gsd=None, sampler=None, generator=None) -> SRPipelineOutput
    pipe.sample_scene(lr, dt, lr_mask=None, overlap=..., sampler=None, generator=None)
                one scene of any size: overlapping tiles fused inside the sampler (sampling/scene_sampler.py)

Each method says how a scene's LRs become sampling branches (`branches`); the fused sampler
(sampling/fused_sampler.py) does the rest. `save_pretrained` / `from_pretrained` are diffusers' own:
a folder with model_index.json, vae/, denoiser/, scheduler/, loadable without Lightning, plus
satdiffmoe_pipeline.py, the custom-pipeline module that `diffusers.DiffusionPipeline.from_pretrained(
folder, trust_remote_code=True)` imports for the class. `from_pretrained` refuses weights that do not
match their configs (pipelines/weights_check.py) and never runs that module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
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
from ..sampling.scene_sampler import SceneSampler, SceneTiles
from ..sampling.tiling import padded_size, tile_grid
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
        self._back_project(out, branches, settings)
        return SRPipelineOutput(image=out.image, uncertainty=out.uncertainty, branch_images=out.branch_images,
                                latent=out.latent, nfe=out.nfe, timesteps=out.timesteps)

    # ------------------------------------------------------------------------------ scene mode
    @property
    def lr_tile(self) -> int:
        """The LR side of one training tile."""
        return self.config.hr_size // self.config.scale

    @property
    def tile_align(self) -> int:
        """LR px between possible tile starts: a tile must start on a latent pixel (2 for f = 8 at ×4)."""
        return Fraction(self.lr_tile, self.latent_shape[1]).numerator

    @torch.no_grad()
    def sample_scene(self, lr: torch.Tensor, dt: Any = None, lr_mask: Any = None, *, overlap: int,
                     sampler: Any = None, generator: torch.Generator | None = None, progress: bool = False,
                     report: Callable[[str], None] | None = None, **sampler_overrides: Any) -> SRPipelineOutput:
        """Super-resolve ONE scene of any size (`lr` N×C×h×w in [-1, 1], `dt` N days, `lr_mask` N×h×w) with
        tiles of the training size overlapping by `overlap` LR px, fused inside the sampler at every
        step (sampling/scene_sampler.py). One tile: exactly `pipe(lr[None], ...)`."""
        settings = self.adjust_sampler(self.sampler_config(sampler, **sampler_overrides))
        lr = torch.as_tensor(lr, dtype=torch.float32)
        count, height, width = lr.shape[0], lr.shape[-2], lr.shape[-1]
        mask = torch.ones(count, height, width) if lr_mask is None else torch.as_tensor(lr_mask, dtype=torch.float32)
        dt = torch.full((count,), float("nan")) if dt is None else torch.as_tensor(dt, dtype=torch.float32)
        tile, align = self.lr_tile, self.tile_align
        full_h, full_w = padded_size(height, tile, align), padded_size(width, tile, align)
        if (full_h, full_w) != (height, width):  # as sample_tiled: reflect where the image is large enough
            pad = (0, full_w - width, 0, full_h - height)
            mode = "reflect" if full_h - height < height and full_w - width < width else "replicate"
            lr = F.pad(lr, pad, mode=mode)
            mask = F.pad(mask[:, None], pad, mode="replicate")[:, 0]
        boxes = tile_grid(full_h, full_w, tile, overlap, align)
        tile_inputs = self._tile_branches(lr, dt, mask, boxes, tile, settings)
        # the scene's own LRs (for the consensus and the map), stitched from the tiles' crops of them
        scene_lr = tile_inputs.lr.new_zeros(1, *tile_inputs.lr.shape[1:3], full_h, full_w)
        scene_mask = None if tile_inputs.lr_mask is None else tile_inputs.lr_mask.new_zeros(
            1, tile_inputs.lr_mask.shape[1], full_h, full_w)
        for i, (y, x) in enumerate(boxes):
            scene_lr[0, ..., y:y + tile, x:x + tile] = tile_inputs.lr[i]
            if scene_mask is not None:
                scene_mask[0, :, y:y + tile, x:x + tile] = tile_inputs.lr_mask[i]
        scene = BranchInputs(cond=None, dt=tile_inputs.dt[:1], valid=tile_inputs.valid[:1], lr=scene_lr,
                             lr_mask=scene_mask,
                             lr_valid=None if tile_inputs.lr_valid is None else tile_inputs.lr_valid[:1])
        channels, side = self.latent_shape[0], self.latent_shape[1]
        per_lr = Fraction(side, tile)  # latent px per LR px
        tiles = SceneTiles(boxes=[(int(y * per_lr), int(x * per_lr)) for y, x in boxes], side=side,
                           height=int(full_h * per_lr), width=int(full_w * per_lr),
                           factor=self.config.hr_size // side)
        sampler = SceneSampler(self.denoiser, self.scheduler.config, self.scheduler.config.prediction_type, settings,
                               vae=self.vae, latent_scale=self.latent_scale, progress=progress,
                               uncondition=self.denoiser.drop_condition, report=report)
        out = sampler.sample_scene(scene, tile_inputs, tiles, channels, generator)
        self._back_project(out, scene, settings)
        crop = (..., slice(0, height * self.config.scale), slice(0, width * self.config.scale))
        latent_crop = (..., slice(0, int(height * per_lr)), slice(0, int(width * per_lr)))
        return SRPipelineOutput(image=out.image[crop], uncertainty=out.uncertainty[crop],
                                branch_images=out.branch_images[crop], latent=out.latent[latent_crop], nfe=out.nfe,
                                timesteps=out.timesteps)

    def _tile_branches(self, lr: torch.Tensor, dt: torch.Tensor, mask: torch.Tensor, boxes: list[tuple[int, int]],
                       tile: int, settings: SamplerConfig) -> BranchInputs:
        """Every tile's BranchInputs as one batch row each, conditions encoded `chunk_size` rows at a time."""
        per_call = max(1, settings.chunk_size // lr.shape[0])
        parts = []
        for first in range(0, len(boxes), per_call):
            group = boxes[first:first + per_call]
            tiles = torch.stack([lr[..., y:y + tile, x:x + tile] for y, x in group])
            masks = torch.stack([mask[..., y:y + tile, x:x + tile] for y, x in group])
            inputs = SRInputs.build(tiles, dt.expand(len(group), -1), masks).to(self.device)
            parts.append(self.branches(inputs, settings))

        def cat(values):
            if values[0] is None:
                return None
            if isinstance(values[0], dict):
                return {key: torch.cat([v[key] for v in values]) for key in values[0]}
            return torch.cat(values)

        return BranchInputs(**{f: cat([getattr(p, f) for p in parts])
                               for f in ("cond", "dt", "valid", "lr", "lr_mask", "lr_valid")})

    @staticmethod
    def _back_project(out, branches: BranchInputs, settings: SamplerConfig) -> None:
        """`sampler.backprojection` on the decoded output, in place (sampling/backprojection.py)."""
        if settings.backprojection and branches.lr is not None:
            observed = branches.valid if branches.lr_valid is None else branches.lr_valid
            out.image = back_project(out.image, branches.lr, observed, branches.lr_mask, settings.backprojection)

    def sample(self, batch: dict[str, Any], sampler: Any = None,
               generator: torch.Generator | list[torch.Generator] | None = None) -> SRPipelineOutput:
        """A `SatDataModule` batch through the pipeline (what validation, `evaluate` and sweeps call;
        they pass one generator per scene, seeded by the scene's key)."""
        return self(SRInputs.from_batch(batch), sampler=sampler, generator=generator)

    def parameters(self):
        """Every component's parameters (the evaluation's parameter counts and device)."""
        for module in (self.vae, self.denoiser):
            yield from module.parameters()
