"""The ControlNet built from a UNet2DModel prior: a faithful `from_unet`, inert at step 0."""

import pytest
import torch

from satdiffmoe.models.controlnet import UNet2DControlNet, unet_forward_with_control


def test_controlled_forward_without_control_equals_the_unet(prior_unet):
    z, t = torch.randn(2, 4, 8, 8), torch.tensor([10, 900])
    with torch.no_grad():
        assert torch.allclose(unet_forward_with_control(prior_unet, z, t), prior_unet(z, t).sample, atol=1e-6)


def test_from_unet_copies_the_encoder_weights(prior_unet):
    controlnet = UNet2DControlNet.from_unet(prior_unet, conditioning_channels=4)
    prior_state = prior_unet.state_dict()
    copied = [k for k in controlnet.state_dict() if k.split(".")[0] in
              ("conv_in", "time_embedding", "down_blocks", "mid_block")]
    assert len(copied) > 20
    for key in copied:
        assert torch.equal(controlnet.state_dict()[key], prior_state[key]), key


def test_zero_initialised_controlnet_leaves_the_prior_unchanged(prior_unet):
    controlnet = UNet2DControlNet.from_unet(prior_unet, conditioning_channels=4)
    z, t, cond = torch.randn(3, 4, 8, 8), torch.tensor([1, 500, 999]), torch.randn(3, 4, 8, 8)
    extra = torch.randn(3, controlnet.time_embed_dim)
    with torch.no_grad():
        control = controlnet(z, t, cond, extra_emb=extra)
        assert all(r.abs().max() == 0 for r in control.down_block_res_samples)
        out = unet_forward_with_control(prior_unet, z, t, control)
        assert torch.equal(out, unet_forward_with_control(prior_unet, z, t))


def test_residual_shapes_match_the_prior_skips(prior_unet):
    controlnet = UNet2DControlNet.from_unet(prior_unet, conditioning_channels=3)
    control = controlnet(torch.randn(2, 4, 8, 8), 5, torch.randn(2, 3, 8, 8))
    # conv_in + (1 resnet + downsample) + (1 resnet, last level has no downsampler)
    assert [r.shape[1:] for r in control.down_block_res_samples] == [
        (16, 8, 8), (16, 8, 8), (16, 4, 4), (32, 4, 4)]
    assert control.mid_block_res_sample.shape == (2, 32, 4, 4)


def test_a_trained_controlnet_changes_the_output(prior_unet):
    controlnet = UNet2DControlNet.from_unet(prior_unet, conditioning_channels=4)
    with torch.no_grad():
        for conv in controlnet.controlnet_down_blocks:
            conv.weight.normal_(std=0.1)
        controlnet.controlnet_cond_embedding.conv_out.weight.normal_(std=0.1)
    z, cond = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        plain = unet_forward_with_control(prior_unet, z, 100)
        controlled = unet_forward_with_control(prior_unet, z, 100, controlnet(z, 100, cond))
    assert (controlled - plain).abs().max() > 1e-3


def test_config_round_trip_rebuilds_the_same_architecture(prior_unet):
    controlnet = UNet2DControlNet.from_unet(prior_unet, conditioning_channels=4)
    rebuilt = UNet2DControlNet.from_config(controlnet.config)
    rebuilt.load_state_dict(controlnet.state_dict())  # strict: same modules, same shapes


def test_skip_block_priors_are_rejected_with_a_clear_error(prior_unet):
    from satdiffmoe.errors import UserError, user_errors

    config = dict(prior_unet.config, down_block_types=("SkipDownBlock2D", "AttnSkipDownBlock2D"))
    with pytest.raises(UserError, match="skip down blocks"), user_errors():  # a ValueError, one CLI line
        UNet2DControlNet(config)
