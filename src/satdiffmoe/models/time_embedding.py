"""Embeddings of scalar metadata (Δt in days, GSD, ...) that are added to the UNet's timestep embedding.

As the README's stage table says ("Training"), Δt goes through a sinusoidal embedding of sign(Δt)·log1p(|Δt|) and an MLP; "unknown"
(NaN) is a learned vector. The log squashes the range (days to years) so that the sinusoid's
frequencies cover both a 3-day and a 3-year gap.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn


class ScalarEmbedding(nn.Module):
    """sinusoid(sign(x)·log1p|x|) -> MLP -> `out_dim`; NaN rows use a learned "unknown" input vector.

    The MLP's last layer starts at zero, so a freshly added embedding contributes nothing: a
    conditional UNet initialised from a prior computes exactly the prior at step 0.
    """

    def __init__(self, out_dim: int, freq_dim: int = 64, max_period: float = 100.0):
        super().__init__()
        self.freq_dim = freq_dim
        self.max_period = max_period  # log1p(|Δt|) <= ~10 for 60 years; periods up to 100 stay unambiguous
        self.unknown = nn.Parameter(torch.randn(freq_dim) * 0.02)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        values = values.float().reshape(-1)
        known = torch.isfinite(values)
        squashed = torch.sign(values) * torch.log1p(values.abs())
        squashed = torch.where(known, squashed, torch.zeros_like(squashed))
        # scale=1000 puts log-days on the same footing as diffusers' integer timesteps
        features = get_timestep_embedding(squashed * 1000.0 / self.max_period, self.freq_dim,
                                          flip_sin_to_cos=True, downscale_freq_shift=0)
        features = torch.where(known[:, None], features, self.unknown.to(features.dtype).expand_as(features))
        return self.mlp(features.to(self.mlp[0].weight.dtype))
