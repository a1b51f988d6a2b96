"""The denoisers: zero-initialised conditioning and the Δt embedding."""

import torch

from satdiffmoe.config import load_config
from satdiffmoe.models import ScalarEmbedding, UNetDenoiser, build_unet

TINY_UNET = ["model.unet.block_out_channels=[16,32]", "model.unet.attention_levels=[false,true]",
             "model.unet.attention_head_dim=8", "model.unet.norm_num_groups=4"]


def tiny_prior(metadata: bool = False) -> UNetDenoiser:
    torch.manual_seed(0)
    cfg = load_config(None, TINY_UNET)
    unet = build_unet(cfg.model.unet, 4, 4, 8, class_embedding=metadata)
    return UNetDenoiser.from_unet(unet, scalar_names=("gsd",) if metadata else ())


def test_unet_denoiser_from_prior_outputs_the_prior_for_any_condition():
    prior = tiny_prior()
    conditional = UNetDenoiser.from_prior(prior, cond_channels=4, scalar_names=("dt",))
    z, t = torch.randn(3, 4, 8, 8), torch.tensor([0, 40, 99])
    condition = 5 * torch.randn(3, 4, 8, 8)
    dt = torch.tensor([-400.0, float("nan"), 12.0])
    with torch.no_grad():  # zero weights add exact zeros; only the conv's summation order may differ
        torch.testing.assert_close(conditional(z, t, condition, dt), prior(z, t), rtol=0, atol=1e-5)
    assert conditional.unet.conv_in.weight.shape[1] == 8
    assert torch.count_nonzero(conditional.unet.conv_in.weight[:, 4:]) == 0


def test_prior_metadata_embedding_is_copied_into_the_conditional_model():
    prior = tiny_prior(metadata=True)
    torch.nn.init.normal_(prior.scalars["gsd"].mlp[-1].weight)  # a trained, non-zero embedding
    conditional = UNetDenoiser.from_prior(prior, 4, ("dt", "gsd"))
    z, t, gsd = torch.randn(2, 4, 8, 8), torch.tensor([5, 50]), torch.tensor([0.5, 10.0])
    with torch.no_grad():
        expected = prior(z, t, {"gsd": gsd})
        got = conditional(z, t, {"image": torch.randn(2, 4, 8, 8), "gsd": gsd}, torch.tensor([3.0, -3.0]))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_time_delta_embedding_separates_sign_magnitude_and_unknown():
    torch.manual_seed(0)
    embedding = ScalarEmbedding(32)
    torch.nn.init.normal_(embedding.mlp[-1].weight)  # past step 0 the last layer is no longer zero
    out = embedding(torch.tensor([3.0, -3.0, 300.0, float("nan"), float("nan")]))
    assert torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # before vs after the HR acquisition
    assert not torch.allclose(out[0], out[2])
    assert torch.equal(out[3], out[4])  # every unknown Δt maps to the one learned vector
    assert not torch.allclose(out[3], embedding(torch.tensor([0.0]))[0])  # unknown is not "same day"


def test_fresh_time_delta_embedding_adds_nothing():
    assert torch.count_nonzero(ScalarEmbedding(32)(torch.tensor([1.0, float("nan")]))) == 0


def test_copying_a_network_does_not_move_the_global_rng():
    # A stage copies its prior and then loads the prior's weights: the copy's throwaway init must not
    # shift what the genuinely new modules draw (the quickstart's numbers depend on it).
    unet = tiny_prior(metadata=True).unet  # identity class embedding: scalar embeddings can attach
    torch.manual_seed(5)
    UNetDenoiser.from_unet(unet, scalar_names=("dt",))
    after_copy = torch.rand(3)
    torch.manual_seed(5)
    ScalarEmbedding(unet.time_embedding.linear_2.out_features)
    after_new_parts_only = torch.rand(3)
    assert torch.equal(after_copy, after_new_parts_only)
