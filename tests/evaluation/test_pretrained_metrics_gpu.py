"""The pretrained-network metrics on a GPU, and our Inception path against torch-fidelity's.

GPU machines only (the project's gpu marker skips them elsewhere). The torch-fidelity comparison
also needs torchvision, torch-fidelity and its Inception weights on disk (nothing is downloaded):
`SATDIFFMOE_TORCH_FIDELITY_INCEPTION=<weights-inception-2015-12-05-6726825d.pth>` or the file in
torch hub's checkpoint folder; it skips with the reason otherwise.
"""

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from satdiffmoe.evaluation import inception, metrics


def textured(count: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = F.interpolate(torch.rand(count, 3, 8, 8, generator=g), size=(64, 64), mode="bicubic", align_corners=False)
    return (smooth * 1.6 - 0.8 + 0.15 * torch.randn(count, 3, 64, 64, generator=g)).clamp(-1, 1)


def torch_fidelity_weights() -> Path:
    pytest.importorskip("torchvision")
    pytest.importorskip("torch_fidelity")
    configured = os.environ.get("SATDIFFMOE_TORCH_FIDELITY_INCEPTION")
    if configured:
        return Path(configured)
    found = sorted((Path(torch.hub.get_dir()) / "checkpoints").glob("*inception-2015-12-05*.pth"))
    if not found:
        pytest.skip("torch-fidelity's Inception weights are not on disk (set SATDIFFMOE_TORCH_FIDELITY_INCEPTION)")
    return found[0]


@pytest.mark.gpu
def test_lpips_on_cuda_matches_cpu():
    assert metrics.lpips_unavailable(None, channels=3) is None
    model = metrics.load_lpips(None)
    pred, target = textured(4, 0), textured(4, 1)
    on_cpu = metrics.lpips(pred, target, model)
    on_gpu = metrics.lpips(pred.cuda(), target.cuda(), model.cuda()).cpu()
    torch.testing.assert_close(on_gpu, on_cpu, atol=1e-3, rtol=1e-3)
    assert metrics.lpips(pred.cuda(), pred.cuda(), model).abs().max() < 1e-6


@pytest.mark.gpu
def test_our_inception_features_and_fid_agree_with_torch_fidelity(monkeypatch):
    weights = torch_fidelity_weights()
    from torchmetrics.image.fid import NoTrainInceptionV3

    # TF32 convolutions would differ by ~1e-3 between the two ports for reasons of their own.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    # antialias=False: TF1's bilinear resize, the one the TF graph was evaluated with and ours uses.
    theirs = NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"],
                                feature_extractor_weights_path=str(weights), antialias=False).cuda()
    ours = metrics.inception_features(None).cuda()
    real, fake = textured(16, 0).cuda(), textured(16, 1).cuda()
    images8 = ((real + 1) * 127.5).round().byte()
    a, b = ours(images8), theirs(images8)
    assert a.shape == b.shape == (16, inception.InceptionFeatures.num_features)
    assert ((a - b).norm(dim=1) / b.norm(dim=1)).max() < 1e-3
    fid_ours = metrics.inception_scores(real, fake, ours, ["fid", "kid"])
    fid_theirs = metrics.inception_scores(real, fake, theirs, ["fid", "kid"])
    assert fid_ours["fid"] == pytest.approx(fid_theirs["fid"], rel=1e-2)
    assert fid_ours["kid"] == pytest.approx(fid_theirs["kid"], rel=2e-2, abs=1e-4)
