"""What every evaluation metric is: its label, unit, which direction is better, and its table group.

The one place these facts live. `evaluate` checks `eval.metrics` against it, the reports take their
column labels, column order and "best" marks from it, and docs/metrics.md defines each entry.

    METRICS["lpips"].higher_is_better   # False
    metrics_in_group("perceptual")      # ['lpips', 'fid', 'kid', 'swd']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str  # column header, with its unit
    higher_is_better: bool | None  # None: no better direction (e.g. how much detail is synthesised)
    per_image: bool = True  # False: one value for the whole set (FID, KID, SWD)
    group: str = "fidelity"  # which method-comparison table shows it


_ENTRIES = [
    # fidelity to the HR
    MetricInfo("psnr", "PSNR (dB)", True),
    MetricInfo("ssim", "SSIM", True),
    MetricInfo("cpsnr", "cPSNR (dB)", True),
    MetricInfo("cssim", "cSSIM", True),
    MetricInfo("lr_psnr", "LR PSNR (dB)", True),
    MetricInfo("psnr_ratio", "PSNR / bicubic", True),
    # perceptual quality (pretrained networks and a weight-free distribution distance)
    MetricInfo("lpips", "LPIPS", False, group="perceptual"),
    MetricInfo("fid", "FID", False, per_image=False, group="perceptual"),
    MetricInfo("kid", "KID", False, per_image=False, group="perceptual"),
    MetricInfo("swd", "SWD", False, per_image=False, group="perceptual"),
    # the satellite-SR protocol: spectra, LR consistency, what was synthesised (opensr-test)
    MetricInfo("sam", "SAM (°)", False, group="protocol"),
    MetricInfo("ergas", "ERGAS", False, group="protocol"),
    MetricInfo("consistency_l1", "LR L1", False, group="protocol"),
    MetricInfo("consistency_sam", "LR SAM (°)", False, group="protocol"),
    MetricInfo("synthesis", "synthesis", None, group="protocol"),
    MetricInfo("improvement", "improvement (%)", True, group="protocol"),
    MetricInfo("omission", "omission (%)", False, group="protocol"),
    MetricInfo("hallucination", "hallucination (%)", False, group="protocol"),
    # does the sampler's uncertainty map predict its error?
    MetricInfo("unc_spearman", "uncertainty–error ρ", True, group="calibration"),
    MetricInfo("ause", "AUSE", False, group="calibration"),
]
METRICS: dict[str, MetricInfo] = {m.name: m for m in _ENTRIES}
GROUPS = ("fidelity", "perceptual", "protocol", "calibration")
GROUP_TITLES = {"fidelity": "fidelity to the HR", "perceptual": "perceptual quality",
                "protocol": "satellite-SR protocol", "calibration": "uncertainty calibration"}
# the columns of ablation tables and figures (every metric stays in the eval JSONs)
HEADLINE_METRICS = ("psnr", "ssim", "lr_psnr", "lpips", "fid", "kid")
# what `evaluate` computes unless eval.metrics says otherwise
DEFAULT_METRICS = [m.name for m in _ENTRIES]


def metrics_in_group(group: str) -> list[str]:
    return [m.name for m in _ENTRIES if m.group == group]
