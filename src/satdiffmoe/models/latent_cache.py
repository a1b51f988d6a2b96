"""Latent caching for a frozen VAE: each image's posterior is computed once per process.

Every stage after the autoencoder (prior, SatDiffMoE, ControlNet, DiffusionSat) encodes the HR and
the bicubic-upsampled LRs through the same frozen VAE at every step; with the dihedral augmentation
and the LR draws the same (image, variant) comes back many times, within a stage and across the
quickstart's stages, which run in one process.

    posterior = encode_posterior(vae, images)     # a diffusers DiagonalGaussianDistribution

The cache is keyed by the image bytes the encoder sees (after augmentation and upsampling) and by the
VAE's weights, identified by the tensors' storage and in-place version counters (`Tensor._version`,
which `load_state_dict`, `copy_` and optimizer steps all advance): an entry is never stale, and a
VAE with any parameter that requires grad (the autoencoder stage), or with active dropout, bypasses it. It holds the
posterior's parameters (mean and log-variance), so a sample drawn from it with the same generator is
what the encoder's own posterior would have drawn. Entries stop being added past `limit_mb`
(`SATDIFFMOE_LATENT_CACHE_MB`, default 2048; 0 turns the cache off). Per process, so DDP ranks and
sweep workers each keep their own.
"""

from __future__ import annotations

import hashlib
import logging
import os
import weakref
from dataclasses import dataclass

import torch
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

log = logging.getLogger(__name__)
ENV = "SATDIFFMOE_LATENT_CACHE_MB"


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    bypassed: int = 0
    full: int = 0  # misses not stored because the cache was at its limit

    def line(self) -> str:
        looked = self.hits + self.misses
        rate = f"{100 * self.hits / looked:.0f}%" if looked else "-"
        return (f"latent cache: {self.hits} of {looked} encodes reused ({rate}), {self.full} not stored "
                f"(cache full), {self.bypassed} bypassed (VAE not frozen)")


# per VAE object (weakly held, so a freed module's entry goes with it): (storage identity, weights digest)
_weights: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_entries: dict[tuple[bytes, bytes], torch.Tensor] = {}  # (weights digest, image digest) -> posterior parameters
_stored_bytes = 0
stats = CacheStats()


def limit_bytes() -> int:
    value = os.environ.get(ENV, "2048").strip()
    try:
        return max(0, int(float(value) * 2**20))
    except ValueError:
        from ..errors import UserError

        raise UserError(f"{ENV}={value!r} is not a size in MB; use a number (0 turns latent caching off)") from None


def _weights_digest(vae: torch.nn.Module) -> bytes:
    """A digest of the VAE's weights, recomputed only when a tensor was replaced or changed in place."""
    tensors = [*vae.parameters(), *vae.buffers()]
    # storage and version counters catch replaced tensors and in-place writes; a write through `.data`
    # (which has its own counter) is caught by a few sampled values of every tensor
    identity = tuple((t.data_ptr(), t._version, t.dtype, t.device, tuple(t.shape),
                      t.detach().reshape(-1)[:: max(1, t.numel() // 8)].tolist()) for t in tensors)
    known = _weights.get(vae)
    if known is not None and known[0] == identity:
        return known[1]
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        digest.update(_row_key(tensor))
    _weights[vae] = (identity, digest.digest())
    return _weights[vae][1]


def _row_key(row: torch.Tensor) -> bytes:
    row = row.detach().contiguous()
    digest = hashlib.blake2b(f"{row.dtype}{tuple(row.shape)}".encode(), digest_size=16)
    digest.update(row.cpu().view(torch.uint8).numpy().tobytes() if row.dtype == torch.bfloat16
                  else row.cpu().numpy().tobytes())
    return digest.digest()


def cacheable(vae: torch.nn.Module) -> bool:
    """Frozen and deterministic: no parameter requires grad, no active dropout (Lightning puts every
    submodule in training mode, so the mode alone says nothing), and the cache is on."""
    if limit_bytes() == 0 or any(p.requires_grad for p in vae.parameters()):
        return False
    return not any(m.training and m.p > 0 for m in vae.modules() if isinstance(m, torch.nn.Dropout))


@torch.no_grad()
def encode_posterior(vae: torch.nn.Module, images: torch.Tensor) -> DiagonalGaussianDistribution:
    """`vae.encode(images).latent_dist`, from the cache for the rows it has seen with these weights."""
    global _stored_bytes
    if not cacheable(vae):
        stats.bypassed += len(images)
        return vae.encode(images).latent_dist
    weights = _weights_digest(vae)
    keys = [(weights, _row_key(row)) for row in images]
    missing = [i for i, key in enumerate(keys) if key not in _entries]
    fresh: dict[tuple[bytes, bytes], torch.Tensor] = {}
    if missing:
        computed = vae.encode(images[missing]).latent_dist.parameters
        limit = limit_bytes()
        for i, parameters in zip(missing, computed):
            fresh[keys[i]] = parameters
            size = parameters.numel() * parameters.element_size()
            if _stored_bytes + size > limit:
                stats.full += 1
                continue
            _entries[keys[i]] = parameters.clone()
            _stored_bytes += size
    stats.hits += len(keys) - len(missing)
    stats.misses += len(missing)
    return DiagonalGaussianDistribution(torch.stack([fresh.get(key, _entries.get(key)) for key in keys]))


def clear() -> None:
    global _stored_bytes
    _entries.clear()
    _stored_bytes = 0
