"""HighRes-net, RAMS and SRCNN: any number of LRs, padding never changes the output, HR-sized output in [-1, 1]."""

import pytest
import torch
from baseline_toys import HR, SCALE, scene_batch
from regression_toys import REGRESSION_STAGES, regression_config

from satdiffmoe.models.highresnet import HighResNet
from satdiffmoe.models.rams import RAMS
from satdiffmoe.training import task_class

LR = HR // SCALE


def task(stage: str):
    torch.manual_seed(0)
    return task_class(stage)(regression_config(stage)).eval()


def padded(batch: dict, slots: int, seed: int = 1) -> dict:
    """The same scenes with their LR axis padded to `slots`; padding slots hold noise, not zeros."""
    g = torch.Generator().manual_seed(seed)
    out = dict(batch)
    extra = slots - batch["lr"].shape[1]
    noise = torch.rand(batch["lr"].shape[0], extra, *batch["lr"].shape[2:], generator=g) * 2 - 1
    out["lr"] = torch.cat([batch["lr"], noise], dim=1)
    out["lr_valid"] = torch.cat([batch["lr_valid"], torch.zeros(batch["lr"].shape[0], extra, dtype=torch.bool)], 1)
    out["dt"] = torch.cat([batch["dt"], torch.randn(batch["lr"].shape[0], extra, generator=g)], dim=1)
    out["lr_mask"] = torch.cat([batch["lr_mask"], torch.ones(batch["lr"].shape[0], extra, LR, LR)], dim=1)
    return out


@pytest.mark.parametrize("frames", [1, 2, 3, 5, 8])
def test_highresnet_fuses_any_number_of_frames(frames):
    torch.manual_seed(0)
    net = HighResNet(in_channels=3, features=8, blocks=1, scale=SCALE)
    out = net(torch.rand(2, frames, 3, LR, LR) * 2 - 1, torch.ones(2, frames, dtype=torch.bool))
    assert out.shape == (2, 3, HR, HR) and torch.isfinite(out).all()


def test_highresnet_padding_to_a_power_of_two_is_masked_out():
    torch.manual_seed(0)
    net = HighResNet(in_channels=3, features=8, blocks=1, scale=SCALE).eval()
    lr = torch.rand(1, 3, 3, LR, LR) * 2 - 1
    alone = net(lr, torch.ones(1, 3, dtype=torch.bool))
    # 3 valid frames among 8 slots of noise, next to a scene with 6 valid frames (so 8 fusion slots)
    stacked = torch.rand(2, 8, 3, LR, LR) * 2 - 1
    stacked[0, :3] = lr[0]
    valid = torch.tensor([[True] * 3 + [False] * 5, [True] * 6 + [False] * 2])
    assert torch.allclose(net(stacked, valid)[0], alone[0], atol=1e-6)


def test_rams_is_built_for_exactly_t_frames():
    net = RAMS(in_channels=3, features=8, blocks=1, frames=5, scale=SCALE, reduction=4)
    assert net(torch.rand(2, 5, 3, LR, LR)).shape == (2, 3, HR, HR)
    with pytest.raises(ValueError, match="5 frames"):
        net(torch.rand(2, 4, 3, LR, LR))


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
@pytest.mark.parametrize("lrs", [1, 3, 6])
def test_every_baseline_takes_any_number_of_lrs(stage, lrs):
    out = task(stage).sample(scene_batch(scenes=2, lrs=lrs), None, None)
    assert out.image.shape == (2, 3, HR, HR) and torch.isfinite(out.image).all()


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
def test_padding_slots_do_not_change_the_output(stage):
    model = task(stage)
    batch = scene_batch(scenes=3, lrs=3, valid_lrs=[1, 2, 3])
    reference = model.sample(batch, None, None).image
    assert torch.allclose(model.sample(padded(batch, 8), None, None).image, reference, atol=1e-6)


@pytest.mark.parametrize("stage", REGRESSION_STAGES)
def test_output_is_hr_sized_in_range_with_one_evaluation_and_no_uncertainty(stage):
    model = task(stage)
    with torch.no_grad():  # an untrained network's raw output leaves [-1, 1]; sample clamps it
        for p in model.parameters():
            p.mul_(20)
    out = model.sample(scene_batch(scenes=2, lrs=3), None, torch.Generator().manual_seed(0))
    assert out.image.shape == (2, 3, HR, HR)
    assert out.image.min() >= -1 and out.image.max() <= 1
    assert out.uncertainty is None and out.nfe == 1


def test_rams_repeats_the_valid_lrs_nearest_in_time_to_fill_t():
    from satdiffmoe.training.rams import fixed_stack

    lr = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, LR, LR)
    dt = torch.tensor([[30.0, -5.0, float("nan"), 99.0]])
    valid = torch.tensor([[True, True, True, False]])
    stack = fixed_stack(lr, dt, valid, frames=5)
    assert stack[0, :, 0, 0, 0].tolist() == [1.0, 0.0, 2.0, 1.0, 0.0]  # |Δt| order, unknown last, padding never


def test_srcnn_sees_only_the_lr_nearest_in_time():
    model = task("srcnn")
    batch = scene_batch(scenes=1, lrs=3)
    batch["dt"] = torch.tensor([[40.0, -3.0, 12.0]])
    other = dict(batch, lr=batch["lr"].clone())
    other["lr"][:, [0, 2]] = 0.5
    assert torch.equal(model.sample(other, None, None).image, model.sample(batch, None, None).image)
