"""Sampling: consensus rules, the fused multi-branch sampler, and `satdiffmoe sample` for own LR stacks."""

from .consensus import CONSENSUS_RULES, FusionContext, fuse_estimates
from .fused_sampler import BranchInputs, FusedSampler, SamplerOutput

__all__ = ["CONSENSUS_RULES", "BranchInputs", "FusedSampler", "FusionContext", "SamplerOutput", "fuse_estimates"]
