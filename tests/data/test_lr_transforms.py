"""LR selection policies, dihedral augmentation and padded collation."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from satdiffmoe.data.collate import BATCH_KEYS, collate_scenes
from satdiffmoe.data.datamodule import SatDataModule
from satdiffmoe.data.transforms import dihedral, select_indices, select_lrs

NAN = math.nan
DT = torch.tensor([-300.0, 10.0, NAN, -5.0, 200.0])


def _sample(count=5, size=8, scale=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hr = torch.rand(3, size, size, generator=generator)
    lr = torch.stack([F.avg_pool2d(hr, scale) + i for i in range(count)])  # LR i = pooled HR + i
    return {
        "key": "s",
        "hr": hr,
        "hr_mask": (hr[0] > 0.5).float(),
        "lr": lr,
        "lr_mask": (lr[:, 0] > 0.5 + torch.arange(count)[:, None, None]).float(),
        "dt": DT[:count].clone(),
        "lr_cloud": torch.arange(count) / 10.0,
        "lr_doy": torch.arange(count) + 100.0,
        "gsd": 2.5,
    }


@pytest.mark.parametrize(
    "policy, k, expected",
    [
        ("first_k", 2, [0, 1]),
        ("first_k", -1, [0, 1, 2, 3, 4]),
        ("first_k", 9, [0, 1, 2, 3, 4]),
        ("all", 2, [0, 1, 2, 3, 4]),
        ("nearest_k", 3, [3, 1, 4]),  # |Δt| 5, 10, 200
        ("nearest_k", -1, [3, 1, 4, 0, 2]),  # unknown Δt last
    ],
)
def test_deterministic_policies(policy, k, expected):
    assert select_indices(DT, policy, k, np.random.default_rng(0)).tolist() == expected


def test_random_k_is_a_sorted_subset_reproducible_from_the_generator():
    picks = [tuple(select_indices(DT, "random_k", 3, np.random.default_rng(seed))) for seed in range(20)]
    assert all(len(set(p)) == 3 and list(p) == sorted(p) for p in picks)
    assert picks == [tuple(select_indices(DT, "random_k", 3, np.random.default_rng(s))) for s in range(20)]
    assert len(set(picks)) > 3


def test_pair_draws_one_lr_and_eventually_every_lr():
    rng = np.random.default_rng(0)
    draws = [select_indices(DT, "pair", 4, rng).tolist() for _ in range(60)]
    assert all(len(d) == 1 for d in draws) and {d[0] for d in draws} == set(range(5))


def test_selection_keeps_per_lr_fields_together():
    sample = _sample()
    chosen = select_lrs(sample, "nearest_k", 2, np.random.default_rng(0))
    assert chosen["dt"].tolist() == [-5.0, 10.0]
    for key in ("lr", "lr_mask", "lr_cloud", "lr_doy"):
        assert torch.equal(chosen[key], sample[key][[3, 1]])
    assert chosen["hr"] is sample["hr"]


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("turns", [0, 1, 2, 3])
def test_dihedral_keeps_hr_and_every_lr_aligned(flip, turns):
    augmented = dihedral(_sample(), flip, turns)
    pooled = F.avg_pool2d(augmented["hr"], 2)
    for i in range(5):
        assert torch.allclose(augmented["lr"][i], pooled + i)
        assert torch.equal(augmented["lr_mask"][i], (augmented["lr"][i, 0] > 0.5 + i).float())
    assert torch.equal(augmented["hr_mask"], (augmented["hr"][0] > 0.5).float())
    assert flip or turns == 0 or not torch.equal(augmented["hr"], _sample()["hr"])


def test_collate_pads_to_the_longest_or_requested_length():
    samples = [
        select_lrs(_sample(seed=s), "first_k", n, np.random.default_rng(0)) for s, n in ((0, 2), (1, 4))
    ]
    batch = collate_scenes(samples)
    assert tuple(batch) == BATCH_KEYS
    assert batch["lr"].shape == (2, 4, 3, 4, 4) and batch["lr_mask"].shape == (2, 4, 4, 4)
    assert batch["lr_valid"].tolist() == [[True, True, False, False], [True] * 4]
    assert not batch["lr"][0, 2:].any() and not batch["dt"][0, 2:].any() and not batch["lr_mask"][0, 2:].any()
    assert torch.equal(batch["lr"][1], samples[1]["lr"]) and batch["gsd"].tolist() == [2.5, 2.5]
    assert collate_scenes(samples, pad_to=6)["lr"].shape[1] == 6


def test_training_augmentation_keeps_real_shards_aligned(tmp_path, scenes, write_split, data_config):
    """LRs written as exact 4×4 means of the HR stay exact means after the loader's random flips/rotations."""
    pooled = []
    for scene in scenes[:6]:
        scene = copy.deepcopy(scene)
        mean = scene.hr.astype(np.float64).reshape(3, 8, 4, 8, 4).mean(axis=(2, 4))
        scene.lr = np.repeat(np.round(mean)[None], scene.num_lr, axis=0).astype(np.uint8)
        pooled.append(scene)
    write_split(tmp_path, pooled, "train", per_shard=3)
    cfg = data_config(tmp_path, "data.augment=true", "data.epoch_length=24")
    orientations = set()
    originals = {s.key: torch.from_numpy(s.hr).float() / 127.5 - 1 for s in pooled}
    for batch in SatDataModule(cfg).train_dataloader():
        expected = F.avg_pool2d(batch["hr"], 4)
        assert (batch["lr"][:, 0] - expected).abs().max() < 2.5 / 255  # uint8 rounding only
        for key, hr in zip(batch["key"], batch["hr"]):
            orientations.add(torch.equal(hr, originals[key]))
    assert orientations == {True, False}  # both augmented and identity orientations occurred
