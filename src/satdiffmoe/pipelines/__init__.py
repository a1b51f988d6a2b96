"""Pipelines: each method as a diffusers-style pipeline, usable without Lightning.

    from satdiffmoe.pipelines import SatDiffMoEPipeline
    pipe = SatDiffMoEPipeline.from_pretrained("exported/satdiffmoe")      # `satdiffmoe export` writes it
    out = pipe(lr=[lr1, lr2, lr3], dt=[-40, 3, 12], nfe=20)               # LR tensors in [-1, 1]
    out.image, out.uncertainty

`PIPELINES` maps a training stage to its pipeline class; `load_pipeline` opens an exported folder.
Imports are lazy (PEP 562) so `satdiffmoe.pipelines.inputs` stays cheap.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "LatentSRPipeline": ".base", "SRPipelineOutput": ".base",
    "SatDiffMoEPipeline": ".satdiffmoe", "PriorPipeline": ".satdiffmoe",
    "ControlNetPipeline": ".controlnet", "DiffusionSatPipeline": ".diffusionsat",
    "SRInputs": ".inputs",
    "PIPELINES": ".registry", "load_pipeline": ".registry", "is_pipeline_folder": ".registry",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
