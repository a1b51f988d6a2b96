"""`sampler.timestep_spacing`: where the nfe steps sit on the training schedule, the same grid for
DDIM and DPM-Solver++, and reported by every sample."""

from __future__ import annotations

import pytest
import torch
from sampling_toys import SCHEDULE, sampler_cfg

from satdiffmoe.errors import UserError
from satdiffmoe.sampling import BranchInputs, FusedSampler

# SCHEDULE has 1000 training steps; at nfe 10 (Lin et al. 2024, table 2):
GRIDS = {
    "leading": [900, 800, 700, 600, 500, 400, 300, 200, 100, 0],
    "trailing": [999, 899, 799, 699, 599, 499, 399, 299, 199, 99],
    "linspace": [999, 888, 777, 666, 555, 444, 333, 222, 111, 0],
}


def sampler(**cfg) -> FusedSampler:
    return FusedSampler(lambda z, t, c, dt: torch.zeros_like(z), SCHEDULE, "epsilon", sampler_cfg(nfe=10, **cfg))


@pytest.mark.parametrize("spacing", sorted(GRIDS))
@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
def test_each_spacing_gives_its_grid_for_both_schedulers(spacing, scheduler):
    made = sampler(timestep_spacing=spacing, scheduler=scheduler).make_scheduler()
    assert made.timesteps.tolist() == GRIDS[spacing]


@pytest.mark.parametrize("spacing", sorted(GRIDS))
def test_a_sample_reports_the_timesteps_it_ran(spacing):
    inputs = BranchInputs(torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))
    out = sampler(timestep_spacing=spacing).sample(inputs, (2, 4, 4), torch.Generator().manual_seed(0))
    assert out.timesteps == GRIDS[spacing]


def test_an_unknown_spacing_is_one_line():
    with pytest.raises(UserError, match="timestep_spacing must be one of leading, trailing, linspace"):
        sampler(timestep_spacing="karras")
