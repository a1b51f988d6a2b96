"""The DiffusionSat 3D ControlNet: 1…T frames, padding masked, order-free, inert at step 0."""

import pytest
import torch

from satdiffmoe.models.controlnet import unet_forward_with_control
from satdiffmoe.models.controlnet3d import TemporalControlNet
from satdiffmoe.models.metadata_embedding import MetadataEmbedding, frame_metadata

T = 4
FIELDS = ["dt", "gsd", "cloud_cover", "day_of_year"]


def trained_like(net: TemporalControlNet, meta: MetadataEmbedding) -> TemporalControlNet:
    """Move every zero-initialised layer off zero, so masking is tested on a net that mixes frames."""
    torch.manual_seed(1)
    with torch.no_grad():
        for module in [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out,
                       *(layer.attention.to_out[0] for layer in net.temporal_layers),
                       *(emb.mlp[-1] for emb in meta.embeddings.values())]:
            for p in module.parameters():
                p.normal_(std=0.1)
    return net


@pytest.fixture
def nets(prior_unet):
    meta = MetadataEmbedding(FIELDS, out_dim=64)
    net = TemporalControlNet.from_unet(prior_unet, conditioning_channels=4, num_frames=T, temporal_heads=2)
    return trained_like(net, meta), meta


def stack(valid_frames: int, rows: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    valid = torch.zeros(rows, T, dtype=torch.bool)
    valid[:, :valid_frames] = True
    batch = {"dt": torch.randn(rows, T, generator=g) * 50, "gsd": torch.full((rows,), 10.0),
             "lr_cloud": torch.rand(rows, T, generator=g), "lr_doy": torch.randint(1, 366, (rows, T), generator=g).float()}
    frames = torch.randn(rows, T, 4, 8, 8, generator=g)
    return frames, valid, batch


def run(nets, z, frames, valid, batch):
    net, meta = nets
    with torch.no_grad():
        return net(z, torch.tensor([50] * z.shape[0]), frames, valid, meta(frame_metadata(batch, FIELDS)))


@pytest.mark.parametrize("valid_frames", [1, 2, T])
def test_output_ignores_the_pixels_and_metadata_of_padded_frames(nets, valid_frames):
    z = torch.randn(2, 4, 8, 8)
    frames, valid, batch = stack(valid_frames)
    reference = run(nets, z, frames, valid, batch)
    pad = ~valid
    frames2 = frames.clone()
    frames2[pad] = 100 * torch.randn_like(frames2[pad])
    batch2 = {k: v.clone() for k, v in batch.items()}
    batch2["dt"][pad], batch2["lr_cloud"][pad], batch2["lr_doy"][pad] = float("nan"), 0.9, 123.0
    other = run(nets, z, frames2, valid, batch2)
    for a, b in zip(reference.down_block_res_samples, other.down_block_res_samples):
        assert torch.equal(a, b)
    assert torch.equal(reference.mid_block_res_sample, other.mid_block_res_sample)
    assert torch.isfinite(reference.mid_block_res_sample).all()


def test_padding_is_masked_not_just_zeroed(nets):
    """Two valid frames padded to T give what the same two frames give unpadded."""
    z = torch.randn(2, 4, 8, 8)
    frames, valid, batch = stack(2)
    padded = run(nets, z, frames, valid, batch)
    short = run(nets, z, frames[:, :2], valid[:, :2], {k: (v[:, :2] if v.ndim == 2 else v) for k, v in batch.items()})
    assert torch.allclose(padded.mid_block_res_sample, short.mid_block_res_sample, atol=1e-5)
    assert padded.mid_block_res_sample.abs().max() > 1e-3


def test_frames_are_mixed_and_order_free(nets):
    z = torch.randn(2, 4, 8, 8)
    frames, valid, batch = stack(3)
    out = run(nets, z, frames, valid, batch)
    order = torch.tensor([2, 0, 1, 3])
    permuted = run(nets, z, frames[:, order], valid[:, order],
                   {k: (v[:, order] if v.ndim == 2 else v) for k, v in batch.items()})
    assert torch.allclose(out.mid_block_res_sample, permuted.mid_block_res_sample, atol=1e-5)
    changed = frames.clone()
    changed[:, 1] += 1.0  # a valid frame
    assert not torch.allclose(run(nets, z, changed, valid, batch).mid_block_res_sample, out.mid_block_res_sample)


def test_untrained_3d_controlnet_leaves_the_prior_unchanged(prior_unet):
    net = TemporalControlNet.from_unet(prior_unet, conditioning_channels=4, num_frames=T, temporal_heads=2)
    z = torch.randn(2, 4, 8, 8)
    frames, valid, _ = stack(3)
    with torch.no_grad():
        control = net(z, 300, frames, valid)
        assert torch.equal(unet_forward_with_control(prior_unet, z, 300, control),
                           unet_forward_with_control(prior_unet, z, 300))


def test_more_frames_than_built_for_is_an_error(prior_unet):
    net = TemporalControlNet.from_unet(prior_unet, conditioning_channels=4, num_frames=2, temporal_heads=2)
    frames, valid, _ = stack(3)
    with pytest.raises(ValueError, match="at most 2"):
        net(torch.randn(2, 4, 8, 8), 1, frames, valid)


def test_config_round_trip_keeps_the_temporal_layers(prior_unet):
    net = TemporalControlNet.from_unet(prior_unet, conditioning_channels=4, num_frames=T, temporal_heads=2)
    rebuilt = TemporalControlNet.from_config(net.config)
    assert rebuilt.config.num_frames == T
    rebuilt.load_state_dict(net.state_dict())


def test_metadata_embedding_gives_unknown_values_their_own_vector():
    meta = MetadataEmbedding(["dt", "cloud_cover"], out_dim=8)
    torch.manual_seed(0)
    for emb in meta.embeddings.values():
        torch.nn.init.normal_(emb.mlp[-1].weight)
    values = {"dt": torch.tensor([[float("nan"), 3.0]]), "cloud_cover": torch.tensor([[0.2, 0.2]])}
    out = meta(values)
    assert out.shape == (1, 2, 8) and torch.isfinite(out).all()
    assert not torch.allclose(out[0, 0], out[0, 1])


def test_unknown_metadata_field_is_a_user_error():
    from satdiffmoe.errors import UserError, user_errors

    # the model raises ValueError; task building turns it into the CLI's one-line UserError (errors.py)
    with pytest.raises(UserError, match="metadata_fields"), user_errors():
        MetadataEmbedding(["dt", "elevation"], out_dim=8)
