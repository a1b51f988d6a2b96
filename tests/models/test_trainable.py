"""train.trainable: parameter counts per mode, LoRA as identity at init, gradients, checkpoint round trip."""

import io

import pytest
import torch
from diffusers import UNet2DConditionModel
from tiny_sd import LATENT_SIZE, write_tiny_sd

from satdiffmoe.models.stable_diffusion import SDConditionalUNet
from satdiffmoe.models.trainable import DEFAULT_LORA_TARGETS, apply_trainable, count_parameters, merge_lora

RANK = 4
# conv_in 32 x 8 x 3 x 3 + 32 bias, Δt ScalarEmbedding(128) = 64 unknown + (64·128 + 128) + (128·128 + 128),
# null tokens 1 x 4 x 32
NEW_PARAMETERS = 2336 + 24896 + 128


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture
def model(sd_folder):
    return SDConditionalUNet.from_pretrained_backbone(sd_folder, cond_channels=4, scalar_names=("dt",), null_tokens=4)


def inputs():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(2, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    return z, torch.tensor([10, 900]), torch.randn(2, 4, LATENT_SIZE, LATENT_SIZE, generator=g), \
        {"dt": torch.tensor([5.0, -30.0])}


def lora_size(unet: UNet2DConditionModel, rank: int) -> int:
    """rank · (in + out) for every attention projection LoRA adapts."""
    return sum(rank * (m.in_features + m.out_features) for name, m in unet.named_modules()
               if isinstance(m, torch.nn.Linear) and any(name.endswith(t) for t in DEFAULT_LORA_TARGETS))


def test_all_trains_every_parameter(model):
    trainable, total = count_parameters(apply_trainable(model, "all"))
    assert trainable == total


def test_new_only_trains_conv_in_the_scalar_embeddings_and_the_null_tokens(model):
    _, total_before = count_parameters(model)
    trainable, total = count_parameters(apply_trainable(model, "new_only"))
    assert (trainable, total) == (NEW_PARAMETERS, total_before)


def test_lora_trains_rank_times_in_plus_out_per_target_plus_the_new_parts(model):
    _, total_before = count_parameters(model)
    adapters = lora_size(model.unet, RANK)
    trainable, total = count_parameters(apply_trainable(model, "lora", lora_rank=RANK))
    # 4 transformer blocks (3 at 32 channels, the mid block's at 64) x (self + cross attention) x 4 projections
    assert adapters == 3 * 2048 + 3840
    assert trainable == adapters + NEW_PARAMETERS
    assert total == total_before + adapters


def test_lora_starts_as_the_identity(model):
    z, t, condition, dt = inputs()
    with torch.no_grad():
        before = model(z, t, condition, dt)
        apply_trainable(model, "lora", lora_rank=RANK)
        assert torch.equal(model(z, t, condition, dt), before)  # lora_B = 0


def test_lora_gradients_reach_only_trainable_parameters_and_frozen_weights_stay_bit_identical(model):
    apply_trainable(model, "lora", lora_rank=RANK)
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    z, t, condition, dt = inputs()
    for _ in range(2):
        optimizer.zero_grad()
        model(z, t, condition, dt).square().mean().backward()
        for name, parameter in model.named_parameters():
            assert (parameter.grad is not None) == parameter.requires_grad, name
        optimizer.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert any(torch.count_nonzero(p) for p in lora_b)  # the adapters moved


def trained_lora(model):
    apply_trainable(model, "lora", lora_rank=RANK)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.add_(0.05 * torch.randn_like(parameter))  # as if trained
    return model


def test_lora_checkpoint_round_trip_into_a_freshly_built_module(model):
    trained_lora(model)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = SDConditionalUNet.from_rebuild_config(model.config_for_rebuild())
    apply_trainable(fresh, "lora", lora_rank=RANK)
    fresh.load_state_dict(state)  # strict: the same adapter layout
    z, t, condition, dt = inputs()
    with torch.no_grad():
        assert torch.equal(fresh(z, t, condition, dt), model(z, t, condition, dt))


def test_merge_lora_exports_a_plain_unet_with_the_same_output(model, tmp_path):
    trained_lora(model)
    z, t, condition, dt = inputs()
    with torch.no_grad():
        expected = model(z, t, condition, dt)
        merge_lora(model)
        torch.testing.assert_close(model(z, t, condition, dt), expected, rtol=0, atol=1e-5)
    assert not any("lora" in key for key in model.state_dict())
    model.unet.save_pretrained(tmp_path)
    assert UNet2DConditionModel.from_pretrained(tmp_path).conv_in.in_channels == 8


def test_unknown_mode_names_the_choices(model):
    with pytest.raises(ValueError, match="all, lora, new_only"):
        apply_trainable(model, "half")


def test_lora_target_that_matches_nothing_names_the_config_key(model):
    with pytest.raises(ValueError, match="train.lora_targets"):
        apply_trainable(model, "lora", target_modules=["no_such_layer"])


def test_always_trainable_prefix_that_matches_nothing_is_an_error(model):
    with pytest.raises(ValueError, match="match no parameter"):
        apply_trainable(model, "new_only", always_trainable=["unet.conv_inn"])


def test_lora_is_added_once(model):
    apply_trainable(model, "lora", lora_rank=RANK)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        apply_trainable(model, "lora", lora_rank=RANK)



def test_lora_on_a_from_scratch_unet_denoiser_trains_adapters_and_merges_to_the_same_output():
    # UNet2DModel has no diffusers adapter mixin: peft injects the same adapters into the plain module
    from diffusers import UNet2DModel
    from peft.tuners.lora import LoraLayer

    from satdiffmoe.models.denoisers import UNetDenoiser

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(16, 32), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, attention_head_dim=8)
    denoiser = UNetDenoiser.from_unet(unet)
    z, t = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)), torch.tensor([10, 900])
    with torch.no_grad():
        before = denoiser.unet(z, t).sample
    apply_trainable(denoiser, "lora", lora_rank=RANK)
    trainable = {name for name, p in denoiser.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in name or name.startswith("unet.conv_in") for name in trainable)
    assert any(".lora_" in name for name in trainable)
    with torch.no_grad():
        torch.testing.assert_close(denoiser.unet(z, t).sample, before)  # lora_B = 0: the identity at init
        for name, p in denoiser.named_parameters():
            if "lora_B" in name:
                p.add_(0.1)
        adapted = denoiser.unet(z, t).sample
        assert (adapted - before).abs().max() > 1e-4
        merge_lora(denoiser)
        assert not any(isinstance(m, LoraLayer) for m in denoiser.modules())
        torch.testing.assert_close(denoiser.unet(z, t).sample, adapted, atol=1e-5, rtol=1e-5)
