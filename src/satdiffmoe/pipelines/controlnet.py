"""`ControlNetPipeline`: the ControlNet baseline at sampling time.

A scene with N LRs becomes one branch (the LR nearest in time, |Δt| smallest) or, with
`sampler.late_fusion`, N independent branches whose decoded samples are averaged (the fused sampler
with fusion off).
"""

from __future__ import annotations

from ..data.lr_stack import nearest_in_time
from ..sampling.config import SamplerConfig
from ..sampling.fused_sampler import BranchInputs
from .base import LatentSRPipeline
from .inputs import SRInputs
from .satdiffmoe import metadata_condition


class ControlNetPipeline(LatentSRPipeline):
    stage = "controlnet"

    def adjust_sampler(self, sampler: SamplerConfig) -> SamplerConfig:
        # late fusion = independent branches averaged after decoding
        return sampler.replace(fusion_every=None) if sampler.late_fusion and sampler.fusion_every else sampler

    def branches(self, inputs: SRInputs, sampler: SamplerConfig) -> BranchInputs:
        if not sampler.late_fusion:
            inputs = inputs.select(nearest_in_time(inputs.dt, inputs.lr_valid)[:, None])
        scenes, count = inputs.lr_valid.shape
        images = self.condition_image(inputs.lr.flatten(0, 1)).unflatten(0, (scenes, count))
        cond = metadata_condition(images, inputs.gsd[:, None].expand(scenes, count), self.denoiser.prior.scalars)
        cond = cond if isinstance(cond, dict) else {"image": cond}
        return BranchInputs(cond=cond, dt=inputs.dt, valid=inputs.lr_valid, lr=self.consistency_lr(inputs.lr), lr_mask=inputs.lr_mask)
