"""`SatDiffMoEPipeline`: one branch per LR image, fused every few steps (the paper's sampler);
`PriorPipeline`: the unconditional prior, one branch per scene."""

from __future__ import annotations

import torch

from ..sampling.config import SamplerConfig
from ..sampling.fused_sampler import BranchInputs
from .base import LatentSRPipeline
from .inputs import SRInputs


def metadata_condition(image: torch.Tensor | None, gsd: torch.Tensor, scalar_names) -> torch.Tensor | dict | None:
    """The condition a `UNetDenoiser` reads: the image alone, or a dict adding the HR's GSD when the
    network embeds one (leading dims of `gsd` match `image`'s)."""
    if "gsd" not in scalar_names:
        return image
    return {"gsd": gsd} if image is None else {"image": image, "gsd": gsd}


class SatDiffMoEPipeline(LatentSRPipeline):
    stage = "satdiffmoe"

    def branches(self, inputs: SRInputs, sampler: SamplerConfig) -> BranchInputs:
        """Every valid LR is one branch; padding slots get a zero condition and are skipped."""
        lr, valid = inputs.lr, inputs.lr_valid
        scenes, count = valid.shape
        rows = valid.flatten()
        flat = lr.flatten(0, 1)[rows]
        chunk = sampler.chunk_size
        encoded = torch.cat([self.condition_image(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])
        image = encoded.new_zeros((scenes * count, *encoded.shape[1:]))
        image[rows] = encoded
        image = image.view(scenes, count, *encoded.shape[1:])
        gsd = inputs.gsd[:, None].expand(scenes, count)
        return BranchInputs(cond=metadata_condition(image, gsd, self.denoiser.scalars), dt=inputs.dt, valid=valid,
                            lr=self.consistency_lr(lr), lr_mask=inputs.lr_mask)


class PriorPipeline(LatentSRPipeline):
    """HR-only samples (evaluated for reference; the LRs only ride along for data consistency)."""

    stage = "prior"
    uses_lr = False

    def branches(self, inputs: SRInputs, sampler: SamplerConfig) -> BranchInputs:
        scenes = inputs.num_scenes
        device = inputs.lr.device
        return BranchInputs(cond=metadata_condition(None, inputs.gsd[:, None], self.denoiser.scalars),
                            dt=torch.zeros(scenes, 1, device=device),
                            valid=torch.ones(scenes, 1, dtype=torch.bool, device=device),
                            lr=self.consistency_lr(inputs.lr[:, :1]), lr_mask=inputs.lr_mask[:, :1])
