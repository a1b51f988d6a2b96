"""Where the sampler's randomness comes from: one stream per scene, one per (scene, branch) row.

Paired comparisons need a scene to see the same noise whatever else changes: the batch it is in,
the scenes before it, the subset evaluated, the device count, and the number of branches N. So

    scene generator   one per scene: the evaluator seeds it from (eval seed, scene key)
                      (`scene_generators`); a caller may pass its own list, diffusers-style
    initial latent    branch k's is the k-th draw from its scene's generator (`shared_noise`: the
                      first draw, for every branch), so it is the same at N = 2 and N = 8
    row generators    every later draw (DDIM eta, re-noising, DiffusionDrop) comes from a generator of
                      its own per (scene, branch), seeded from the scene's stream right after that
                      branch's initial latent: branch k's draws never depend on any other row

A single `torch.Generator` for a batch stays accepted (diffusers' convention): the batch's initial
latents are then one draw from it, so a scene's noise depends on the batch it is in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from diffusers.utils.torch_utils import randn_tensor

SEED_BITS = 63  # torch.Generator.manual_seed takes any non-negative int below 2**64; int64 range is portable

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def scene_seed(seed: int, key: str) -> int:
    """A stable seed for (eval seed, scene key): the same on every machine, process and Python run
    (`hash()` is salted per process)."""
    digest = hashlib.sha256(f"{int(seed)}/{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> (64 - SEED_BITS)


def scene_generators(seed: int, keys: Sequence[str], device: torch.device | str = "cpu") -> list[torch.Generator]:
    """One generator per scene, seeded by (seed, scene key)."""
    return [torch.Generator(device=device).manual_seed(scene_seed(seed, key)) for key in keys]


def rand_tensor(shape: tuple, generator: torch.Generator | None, device: torch.device,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Uniform [0, 1) draws in diffusers' `randn_tensor` idiom: drawn on the generator's device and
    moved, since `torch.rand(device="cuda", generator=<cpu generator>)` raises."""
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device, dtype=dtype).to(device)


class BranchNoise:
    """The initial latents of B×N branches and a generator per (scene, branch) row for later draws."""

    def __init__(self, generator: GeneratorLike, batch: int, branches: int, latent_shape: tuple, shared: bool,
                 device: torch.device, dtype: torch.dtype = torch.float32):
        self.device, self.dtype = device, dtype
        self.batch, self.branches = batch, branches
        latent_shape = tuple(latent_shape)
        if generator is None or isinstance(generator, torch.Generator):
            # one stream for the batch (diffusers' convention): the batch's latents in one draw, then the rows'
            draw = randn_tensor((batch, 1 if shared else branches) + latent_shape, generator=generator,
                                device=device, dtype=dtype)
            self.initial = draw.expand((batch, branches) + latent_shape).clone()
            self.rows = [_child(generator) for _ in range(batch * branches)]
            return
        scenes = list(generator)
        if len(scenes) != batch:
            raise ValueError(f"got {len(scenes)} generators for {batch} scenes: pass one per scene, or one for all")
        latents, self.rows = [], []
        for stream in scenes:
            common = randn_tensor(latent_shape, generator=stream, device=device, dtype=dtype) if shared else None
            for _ in range(branches):  # branch k: its latent, then its row seed, so k never depends on N
                latents.append(common if shared else randn_tensor(latent_shape, generator=stream, device=device,
                                                                  dtype=dtype))
                self.rows.append(_child(stream))
        self.initial = torch.stack(latents).view((batch, branches) + latent_shape).clone()

    def randn(self, shape: tuple) -> torch.Tensor:
        """Standard normal draws of shape B×N×..., each branch's from its own generator."""
        rows = randn_tensor((self.batch * self.branches,) + tuple(shape[2:]), generator=self.rows,
                            device=self.device, dtype=self.dtype)
        return rows.view(shape)

    def rand(self) -> torch.Tensor:
        """One uniform draw per branch: B×N."""
        draws = [rand_tensor((1,), g, self.device) for g in self.rows]
        return torch.cat(draws).view(self.batch, self.branches)


def _child(stream: torch.Generator | None) -> torch.Generator:
    """A CPU generator seeded from `stream` (a fresh random one without a stream)."""
    device = stream.device if stream is not None else "cpu"
    seed = int(torch.randint(0, 2 ** SEED_BITS - 1, (1,), generator=stream, device=device).item())
    return torch.Generator().manual_seed(seed)
