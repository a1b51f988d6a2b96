"""DiffusionSat's numeric metadata embedding: one sinusoid + MLP per field, summed.

Khanna et al. (DiffusionSat) embed each numeric metadata value (GSD, cloud cover, acquisition date,
...) with a sinusoidal encoding and its own MLP and add the sum to the timestep embedding. Each field
here is the project's `ScalarEmbedding` (the same module that embeds Δt for SatDiffMoE): sinusoid of
sign·log1p(value), an MLP whose last layer starts at zero, and a learned vector for unknown (NaN).

Config names (`model.controlnet.metadata_fields`) map to batch keys (docs/ARCHITECTURE.md) through
`METADATA_KEYS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .time_embedding import ScalarEmbedding

# config field -> batch key; every key is B×N except `gsd` (B, one per scene, shared by its frames).
METADATA_KEYS: dict[str, str] = {"dt": "dt", "gsd": "gsd", "cloud_cover": "lr_cloud", "day_of_year": "lr_doy"}
# Cloud cover arrives as a fraction; in percent, log1p spreads 0..100 over ~4.6 units instead of 0.69.
PRE_SCALE: dict[str, float] = {"cloud_cover": 100.0}


def check_fields(fields: Sequence[str]) -> None:
    unknown = [f for f in fields if f not in METADATA_KEYS]
    if unknown:
        raise ValueError(f"model.controlnet.metadata_fields has unknown field(s) {unknown}; "
                        f"choose from {sorted(METADATA_KEYS)}")


def frame_metadata(batch: Mapping[str, torch.Tensor], fields: Sequence[str]) -> dict[str, torch.Tensor]:
    """Per-frame metadata B×N for `fields`, read from a datamodule batch (NaN where unknown)."""
    check_fields(fields)
    frames = batch["dt"].shape
    values = {}
    for name in fields:
        value = batch[METADATA_KEYS[name]].float()
        values[name] = value[:, None].expand(frames) if value.ndim == 1 else value
    return values


class MetadataEmbedding(nn.Module):
    """Sum over fields of `ScalarEmbedding(value)`; any leading shape in, same shape × `out_dim` out."""

    def __init__(self, fields: Sequence[str], out_dim: int):
        super().__init__()
        check_fields(fields)
        self.fields = list(fields)
        self.embeddings = nn.ModuleDict({name: ScalarEmbedding(out_dim) for name in self.fields})

    def forward(self, metadata: Mapping[str, torch.Tensor]) -> torch.Tensor:
        missing = [name for name in self.fields if name not in metadata]
        if missing:
            raise ValueError(f"metadata embedding needs field(s) {missing}")
        shape = metadata[self.fields[0]].shape
        total = sum(emb(metadata[name] * PRE_SCALE.get(name, 1.0)) for name, emb in self.embeddings.items())
        return total.view(*shape, -1)
