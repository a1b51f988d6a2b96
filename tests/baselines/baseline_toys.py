"""Tiny networks, configs and datamodule-shaped batches shared by the baseline tests."""

import torch
from diffusers import UNet2DModel

HR, SCALE = 16, 4


def tiny_prior_unet(seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    unet = UNet2DModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=8, norm_num_groups=8,
    )
    # A freshly built UNet2DModel has zero-initialised output layers in places; perturb every weight so
    # "the prior's output is unchanged" cannot hold by accident.
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return unet.eval()


def task_config(pretrained_dirs, stage: str, **overrides):
    from satdiffmoe.config import config_from_dict, with_overrides

    cfg = config_from_dict({"stage": stage, "name": f"test-{stage}"})
    settings = {"model.vae.pretrained": str(pretrained_dirs / "vae"), "model.unet.pretrained": str(pretrained_dirs / "unet"),
                "data.hr_size": HR, "data.scale": SCALE, "data.channels": 3, "model.controlnet.frames": 4,
                "model.controlnet.temporal_heads": 2, "train.warmup_steps": 0, "train.lr": 1e-3,
                "train.val_nfe": 2, "train.ema_decay": 0.0, "model.cond_dropout": 0.0}
    settings.update(overrides)
    return with_overrides(cfg, settings)


def scene_batch(scenes: int = 2, lrs: int = 3, valid_lrs=None, seed: int = 0) -> dict:
    """A batch shaped like SatDataModule's: LRs are noisy downsamples of the HR, padded to `lrs`."""
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(scenes, 3, HR, HR, generator=g) * 2 - 1
    low = torch.nn.functional.avg_pool2d(hr, SCALE)
    lr = (low[:, None] + 0.05 * torch.randn(scenes, lrs, 3, HR // SCALE, HR // SCALE, generator=g)).clamp(-1, 1)
    valid = torch.ones(scenes, lrs, dtype=torch.bool)
    for row, count in enumerate(valid_lrs or []):
        valid[row, count:] = False
    lr = lr * valid[..., None, None, None]
    dt = (torch.randn(scenes, lrs, generator=g) * 30).masked_fill(~valid, 0.0)
    return {"hr": hr, "lr": lr, "lr_mask": valid[..., None, None].float().expand(-1, -1, HR // SCALE, HR // SCALE),
            "lr_valid": valid, "dt": dt, "lr_cloud": torch.rand(scenes, lrs, generator=g) * valid,
            "lr_doy": torch.randint(1, 366, (scenes, lrs), generator=g).float() * valid,
            "gsd": torch.full((scenes,), 1.5), "hr_mask": torch.ones(scenes, HR, HR),
            "key": [f"scene{i}" for i in range(scenes)]}
