"""Sampling: the typed sampler config, consensus rules and the fused multi-branch sampler.

Imports are lazy (PEP 562): config loading imports `sampling.config` without pulling in torch.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    "SamplerConfig": ".config",
    "CONSENSUS_RULES": ".consensus", "FusionContext": ".consensus", "fuse_estimates": ".consensus",
    "BranchInputs": ".fused_sampler", "FusedSampler": ".fused_sampler", "SamplerOutput": ".fused_sampler",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
