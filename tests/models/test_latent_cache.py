"""Latent caching (models/latent_cache.py): the same posterior as the encoder's, never stale."""

import pytest
import torch
from diffusers import AutoencoderKL

from satdiffmoe.models import latent_cache


def tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
                        layers_per_block=1)
    return vae.requires_grad_(False).eval()


@pytest.fixture(autouse=True)
def empty_cache():
    latent_cache.clear()
    yield
    latent_cache.clear()


def images(count: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(count, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def counting(vae: AutoencoderKL) -> list[int]:
    rows: list[int] = []
    vae.encoder.register_forward_hook(lambda module, args, out: rows.append(len(args[0])))
    return rows


def test_cached_posteriors_are_the_encoders_and_each_image_is_encoded_once():
    vae, x = tiny_vae(), images(4)
    encoded = counting(vae)
    expected = vae.encode(x).latent_dist
    encoded.clear()
    first = latent_cache.encode_posterior(vae, x)
    # a batch with two seen rows (in another order) and two new ones: only the new ones are encoded
    mixed = torch.cat([x[2:3], images(2, seed=5), x[0:1]])
    second = latent_cache.encode_posterior(vae, mixed)
    assert encoded == [4, 2]
    torch.testing.assert_close(first.mean, expected.mean)
    torch.testing.assert_close(first.logvar, expected.logvar)
    torch.testing.assert_close(second.mean[0], expected.mean[2])
    torch.testing.assert_close(second.mean[3], expected.mean[0])
    torch.testing.assert_close(second.mean[1:3], vae.encode(mixed[1:3]).latent_dist.mean)
    # a sample drawn with the same generator is the one the encoder's own posterior gives
    draw = lambda posterior: posterior.sample(torch.Generator().manual_seed(3))  # noqa: E731
    torch.testing.assert_close(draw(latent_cache.encode_posterior(vae, x)), draw(expected))


def test_changed_weights_never_read_old_entries():
    vae, x = tiny_vae(), images(2)
    before = latent_cache.encode_posterior(vae, x).mean
    vae.load_state_dict(tiny_vae(seed=7).state_dict())  # in place: same tensors, new values
    after = latent_cache.encode_posterior(vae, x).mean
    torch.testing.assert_close(after, vae.encode(x).latent_dist.mean)
    assert not torch.allclose(after, before)
    with torch.no_grad():  # a write through .data bypasses the version counter; the sampled values see it
        for p in vae.encoder.conv_in.parameters():
            p.data.mul_(2)
    torch.testing.assert_close(latent_cache.encode_posterior(vae, x).mean, vae.encode(x).latent_dist.mean)


def test_a_second_module_with_the_same_weights_shares_the_entries():
    """The quickstart's stages each load the autoencoder's VAE anew: they reuse each other's encodes."""
    first, second, x = tiny_vae(), tiny_vae(), images(3)
    latent_cache.encode_posterior(first, x)
    encoded = counting(second)
    torch.testing.assert_close(latent_cache.encode_posterior(second, x).mean, first.encode(x).latent_dist.mean)
    assert encoded == []


def test_a_vae_being_trained_or_the_cache_turned_off_bypasses_it(monkeypatch):
    vae, x = tiny_vae(), images(2)
    vae.requires_grad_(True)
    encoded = counting(vae)
    latent_cache.encode_posterior(vae, x)
    latent_cache.encode_posterior(vae, x)
    assert encoded == [2, 2]
    vae.requires_grad_(False)
    monkeypatch.setenv(latent_cache.ENV, "0")
    latent_cache.encode_posterior(vae, x)
    latent_cache.encode_posterior(vae, x)
    assert encoded == [2, 2, 2, 2]


def test_past_its_limit_the_cache_stops_storing_but_still_answers(monkeypatch):
    vae, x = tiny_vae(), images(3)
    entry_mb = 2 * 4 * 8 * 8 * 4 / 2**20  # mean and logvar of a 4×8×8 latent, float32
    monkeypatch.setenv(latent_cache.ENV, str(entry_mb * 2))
    encoded = counting(vae)
    full_before = latent_cache.stats.full
    posterior = latent_cache.encode_posterior(vae, x)
    assert latent_cache.stats.full - full_before == 1
    torch.testing.assert_close(posterior.mean, vae.encode(x).latent_dist.mean)
    encoded.clear()
    latent_cache.encode_posterior(vae, x)
    assert encoded == [1]  # only the one that did not fit is encoded again
