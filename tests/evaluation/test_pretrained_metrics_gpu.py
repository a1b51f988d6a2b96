"""The real LPIPS code path with weight files the tests write (GPU machines with torchvision;
skipped elsewhere by the project's gpu marker)."""

import pytest
import torch

from satdiffmoe.evaluation import metrics


@pytest.mark.gpu
def test_lpips_loads_local_weights_and_scores_identity_zero(tmp_path):
    from torchmetrics.functional.image.lpips import _NoTrainLpips

    torch.manual_seed(0)
    weights = tmp_path / "lpips_alex.pth"
    torch.save(_NoTrainLpips(net="alex", pretrained=False, pnet_rand=True).state_dict(), weights)
    assert metrics.lpips_unavailable(str(weights), channels=3) is None
    model = metrics.load_lpips(str(weights)).cuda()
    images = torch.rand(2, 3, 64, 64, device="cuda") * 2 - 1
    assert metrics.lpips(images, images, model).abs().max() < 1e-6
    assert (metrics.lpips(images, -images, model) > 0).all()
