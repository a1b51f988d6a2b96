"""SatDiffMoE: multi-temporal satellite super-resolution with fused latent diffusion."""
__version__ = "0.1.0"
