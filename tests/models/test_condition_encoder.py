"""The multiband condition encoder: latent-grid output, zero at init, trainable in front of an SD UNet."""

import pytest
import torch
from tiny_sd import LATENT_SIZE, VAE_FACTOR, write_tiny_sd

from satdiffmoe.models.condition_encoder import ConditionEncoder
from satdiffmoe.models.stable_diffusion import SDConditionalUNet, load_sd_backbone

BANDS = 13  # Sentinel-2 L1C


def test_thirteen_band_lr_at_hr_size_maps_onto_the_8x_latent_grid():
    encoder = ConditionEncoder(BANDS, latent_channels=4, downsample_factor=8)
    assert encoder.block_out_channels == (16, 32, 96, 256)  # SD ControlNet's conditioning embedding
    assert encoder(torch.randn(2, BANDS, 64, 64)).shape == (2, 4, 8, 8)


def test_output_is_exactly_zero_at_initialisation():
    encoder = ConditionEncoder(BANDS, downsample_factor=2)
    assert torch.count_nonzero(encoder(5 * torch.randn(2, BANDS, 16, 16))) == 0


def test_gradients_reach_the_output_conv_and_one_step_makes_the_output_non_zero():
    torch.manual_seed(0)
    encoder = ConditionEncoder(BANDS, downsample_factor=2)
    lr, target = torch.randn(2, BANDS, 16, 16), torch.randn(2, 4, 8, 8)
    (encoder(lr) - target).square().mean().backward()
    assert encoder.embedding.conv_out.weight.grad.abs().sum() > 0
    torch.optim.SGD(encoder.parameters(), lr=0.1).step()
    assert torch.count_nonzero(encoder(lr)) > 0


def test_sizes_that_are_not_a_multiple_of_the_factor_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        ConditionEncoder(BANDS)(torch.randn(1, BANDS, 60, 64))


def test_widths_must_match_the_downsampling_factor():
    with pytest.raises(ValueError, match="log2"):
        ConditionEncoder(BANDS, downsample_factor=8, block_out_channels=(16, 32))


def test_rebuild_config_gives_the_same_architecture():
    encoder = ConditionEncoder(BANDS, 4, 2, block_out_channels=(8, 16))
    rebuilt = ConditionEncoder(**encoder.config_for_rebuild())
    rebuilt.load_state_dict(encoder.state_dict())


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


def encoder_gradient(sd_folder, zero_cond_weights: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(model output, pretrained output, |grad| of the encoder's output conv) for one batch."""
    torch.manual_seed(0)
    backbone = load_sd_backbone(sd_folder)
    model = SDConditionalUNet.from_pretrained_backbone(backbone, cond_channels=4, null_tokens=4,
                                                       zero_cond_weights=zero_cond_weights)
    encoder = ConditionEncoder(BANDS, latent_channels=4, downsample_factor=VAE_FACTOR)
    z, t = torch.randn(2, 4, LATENT_SIZE, LATENT_SIZE), torch.tensor([10, 900])
    lr = torch.randn(2, BANDS, LATENT_SIZE * VAE_FACTOR, LATENT_SIZE * VAE_FACTOR)
    out = model(z, t, encoder(lr))
    out.square().mean().backward()
    with torch.no_grad():
        pretrained = backbone.unet(z, t, model.encoder_hidden_states(2, z.dtype)).sample
    return out.detach(), pretrained, encoder.embedding.conv_out.weight.grad.abs().sum()


def test_encoder_in_front_of_default_initialised_channels_keeps_step0_and_trains(sd_folder):
    out, pretrained, gradient = encoder_gradient(sd_folder, zero_cond_weights=False)
    assert torch.equal(out, pretrained)  # the encoder outputs exact zeros
    assert gradient > 0


def test_encoder_in_front_of_zero_channels_never_trains(sd_folder):
    """The pitfall `zero_cond_weights=False` avoids: zero weights on a zero input, both gradients zero."""
    _, _, gradient = encoder_gradient(sd_folder, zero_cond_weights=True)
    assert gradient == 0
