"""Stable Diffusion backbones: loading local folders, step 0 = the pretrained UNet, rebuild, ControlNet."""

import json

import pytest
import torch
from diffusers import UNet2DConditionModel, UNet2DModel
from tiny_sd import CROSS_ATTENTION_DIM, LATENT_SIZE, TOKENIZER_MAX_LENGTH, tiny_unet, write_tiny_sd

from satdiffmoe.models.stable_diffusion import (
    BackboneFolderError,
    SDConditionalUNet,
    controlnet_from_sd_unet,
    encode_prompt,
    forward_with_control,
    load_sd_backbone,
    pretrained_folder_kind,
)

B = 3


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd") / "tiny-sd")


@pytest.fixture(scope="module")
def sd_text_folder(tmp_path_factory):
    return write_tiny_sd(tmp_path_factory.mktemp("sd_text") / "tiny-sd", text_encoder=True)


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(B, 4, LATENT_SIZE, LATENT_SIZE, generator=g)
    return z, torch.tensor([1, 500, 999]), torch.randn(B, 4, LATENT_SIZE, LATENT_SIZE, generator=g)


def test_pipeline_folder_gives_unet_vae_and_the_folders_v_prediction_scheduler(sd_folder):
    backbone = load_sd_backbone(sd_folder)
    assert isinstance(backbone.unet, UNet2DConditionModel)
    assert backbone.vae is not None and backbone.vae_factor == 2 and backbone.latent_scale == pytest.approx(0.18215)
    assert backbone.prediction_type == "v_prediction"
    assert backbone.scheduler_config["_class_name"] == "DDIMScheduler"
    assert backbone.text_encoder is None  # model_index.json says [null, null]
    assert pretrained_folder_kind(sd_folder) == "sd_pipeline"


def test_bare_unet_folder_gives_the_unet_alone_with_epsilon_prediction(sd_folder):
    backbone = load_sd_backbone(sd_folder / "unet")
    assert pretrained_folder_kind(sd_folder / "unet") == "sd_unet"
    assert backbone.vae is None and backbone.scheduler_config is None
    assert backbone.prediction_type == "epsilon"


def test_missing_folder_is_a_file_not_found_error_naming_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json, unet/, vae/, scheduler/"):
        load_sd_backbone(tmp_path / "nowhere")


def test_folder_without_configs_names_the_expected_layout(tmp_path):
    with pytest.raises(ValueError, match="neither model_index.json nor config.json"):
        load_sd_backbone(tmp_path)


def test_pipeline_folder_without_unet_is_a_file_not_found_error(tmp_path):
    (tmp_path / "model_index.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="no unet/ folder"):
        load_sd_backbone(tmp_path)


def test_unet2dmodel_folder_points_to_the_from_scratch_loader(tmp_path):
    UNet2DModel(sample_size=8, block_out_channels=(8, 16), norm_num_groups=4,
                down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2).save_pretrained(tmp_path)
    with pytest.raises(BackboneFolderError, match="load_pretrained_unet"):
        load_sd_backbone(tmp_path)


def test_pickled_bin_weights_are_refused_with_the_resave_fix(tmp_path):
    tiny_unet().save_pretrained(tmp_path, safe_serialization=False)
    with pytest.raises(BackboneFolderError, match="safetensors"):
        load_sd_backbone(tmp_path)


def test_unet_with_class_embeddings_is_refused(tmp_path):
    config = {k: v for k, v in tiny_unet().config.items() if not k.startswith("_")}
    UNet2DConditionModel.from_config(dict(config, num_class_embeds=10)).save_pretrained(tmp_path)
    with pytest.raises(BackboneFolderError, match="class embeddings"):
        load_sd_backbone(tmp_path)


def test_step0_equals_the_pretrained_unet_bit_for_bit_with_the_condition_zeroed(sd_folder):
    backbone = load_sd_backbone(sd_folder)
    model = SDConditionalUNet.from_pretrained_backbone(backbone, cond_channels=4, scalar_names=("dt", "gsd"),
                                                       null_tokens=4)
    z, t, _ = inputs()
    scalars = {"dt": torch.tensor([-400.0, float("nan"), 12.0]), "gsd": torch.tensor([0.5, 1.0, 10.0])}
    with torch.no_grad():
        expected = backbone.unet(z, t, model.encoder_hidden_states(B, z.dtype)).sample
        got = model(z, t, torch.zeros_like(z), scalars)
    assert torch.equal(got, expected)
    assert model.unet.conv_in.weight.shape[1] == 8 and torch.count_nonzero(model.unet.conv_in.weight[:, 4:]) == 0


def test_scalar_embeddings_reach_the_timestep_embedding_through_the_identity_class_embedding(sd_folder):
    model = SDConditionalUNet.from_pretrained_backbone(sd_folder, scalar_names=("dt",), null_tokens=4)
    assert isinstance(model.unet.class_embedding, torch.nn.Identity)
    z, t, _ = inputs()
    dt = {"dt": torch.tensor([3.0, -3.0, 300.0])}
    with torch.no_grad():
        before = model(z, t, scalars=dt)
        torch.nn.init.normal_(model.scalars["dt"].mlp[-1].weight)  # past step 0
        assert not torch.allclose(model(z, t, scalars=dt), before)


def test_step0_equals_the_pretrained_unet_for_any_condition(sd_folder):
    backbone = load_sd_backbone(sd_folder)
    model = SDConditionalUNet.from_pretrained_backbone(backbone, cond_channels=4, scalar_names=("dt",), null_tokens=4)
    z, t, condition = inputs()
    with torch.no_grad():
        expected = backbone.unet(z, t, model.encoder_hidden_states(B, z.dtype)).sample
        got = model(z, t, 5 * condition, {"dt": torch.tensor([3.0, -3.0, 300.0])})
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_without_a_text_encoder_the_prompt_is_learned_null_tokens(sd_folder):
    model = SDConditionalUNet.from_pretrained_backbone(sd_folder, null_tokens=4)
    assert model.prompt_embedding is None and model.prompt is None
    assert model.null_tokens.shape == (1, 4, CROSS_ATTENTION_DIM) and model.null_tokens.requires_grad
    z, t, _ = inputs()
    model(z, t).square().mean().backward()
    assert model.null_tokens.grad is not None and model.null_tokens.grad.abs().sum() > 0
    assert "null_tokens" in model.always_trainable


def test_with_a_text_encoder_the_prompt_embedding_is_computed_once_and_kept_as_a_buffer(sd_text_folder):
    backbone = load_sd_backbone(sd_text_folder)
    model = SDConditionalUNet.from_pretrained_backbone(backbone, prompt="a satellite image")
    assert model.null_tokens is None and model.prompt == "a satellite image"
    assert model.prompt_embedding.shape == (1, TOKENIZER_MAX_LENGTH, CROSS_ATTENTION_DIM)
    assert "prompt_embedding" in model.state_dict()
    assert all(p is not model.prompt_embedding for p in model.parameters())
    torch.testing.assert_close(model.prompt_embedding,
                               encode_prompt(backbone.text_encoder, backbone.tokenizer, "a satellite image"))
    other = encode_prompt(backbone.text_encoder, backbone.tokenizer, "a city")
    assert not torch.allclose(model.prompt_embedding, other)


def test_rebuild_from_config_needs_no_folder_and_reproduces_the_outputs(sd_text_folder):
    model = SDConditionalUNet.from_pretrained_backbone(sd_text_folder, cond_channels=4, scalar_names=("dt",))
    torch.nn.init.normal_(model.scalars["dt"].mlp[-1].weight)  # past step 0
    config = json.loads(json.dumps(model.config_for_rebuild()))  # plain: survives JSON / weights_only loads
    assert config["prompt_source"] == "text_encoder"
    assert config["prompt_embedding_shape"] == [1, TOKENIZER_MAX_LENGTH, CROSS_ATTENTION_DIM]
    assert config["unet"]["in_channels"] == 8 and config["scalar_names"] == ["dt"]
    rebuilt = SDConditionalUNet.from_rebuild_config(config)
    rebuilt.load_state_dict(model.state_dict())
    assert rebuilt.prediction_type == "v_prediction"
    z, t, condition = inputs()
    dt = {"dt": torch.tensor([1.0, 2.0, float("nan")])}
    with torch.no_grad():
        assert torch.equal(rebuilt(z, t, condition, dt), model(z, t, condition, dt))


def test_from_prior_keeps_the_prior_output_and_its_trained_embeddings(sd_folder):
    prior = SDConditionalUNet.from_pretrained_backbone(sd_folder, scalar_names=("gsd",), null_tokens=4)
    torch.nn.init.normal_(prior.scalars["gsd"].mlp[-1].weight)
    conditional = SDConditionalUNet.from_prior(prior, cond_channels=4, scalar_names=("dt", "gsd"))
    z, t, condition = inputs()
    gsd = {"gsd": torch.tensor([0.5, 1.0, 10.0])}
    with torch.no_grad():
        got = conditional(z, t, condition, {**gsd, "dt": torch.tensor([3.0, -3.0, 9.0])})
        torch.testing.assert_close(got, prior(z, t, scalars=gsd), rtol=0, atol=1e-5)
    assert torch.equal(conditional.null_tokens, prior.null_tokens)


def test_zero_initialised_controlnet_leaves_the_unet_output_unchanged(sd_folder):
    model = SDConditionalUNet.from_pretrained_backbone(sd_folder, scalar_names=("dt",), null_tokens=4)
    controlnet = controlnet_from_sd_unet(model, conditioning_channels=4)  # diffusers' ControlNetModel.from_unet
    z, t, condition = inputs()
    dt = {"dt": torch.tensor([3.0, -3.0, 9.0])}
    with torch.no_grad():
        plain = model(z, t, scalars=dt)
        assert torch.equal(forward_with_control(model, controlnet, z, t, condition, scalars=dt), plain)
        torch.nn.init.normal_(controlnet.controlnet_mid_block.weight)  # past step 0 the residuals count
        assert not torch.allclose(forward_with_control(model, controlnet, z, t, condition, scalars=dt), plain)


def test_controlnet_takes_a_pixel_space_multiband_condition(sd_folder):
    model = SDConditionalUNet.from_pretrained_backbone(sd_folder, null_tokens=4)
    controlnet = controlnet_from_sd_unet(model.unet, conditioning_channels=13,
                                         conditioning_embedding_out_channels=(16, 32))  # 2x = the tiny VAE's
    z, t, _ = inputs()
    lr = torch.randn(B, 13, 2 * LATENT_SIZE, 2 * LATENT_SIZE)
    with torch.no_grad():
        assert forward_with_control(model, controlnet, z, t, lr).shape == z.shape
