"""What the regression baselines (stages `highresnet`, `rams`, `srcnn`) share: one network from LRs to
HR pixels, trained with the registration-tolerant loss, no VAE and no diffusion.

    loss = -cPSNR(output, HR)   best over shifts of up to `model.regression.max_shift` px, brightness
                                bias corrected, clear HR pixels only (evaluation.metrics.registered_mse)

The HR of a satellite SR pair is never perfectly registered to its LRs nor equally bright; a plain
MSE would teach the network to blur over the misregistration (PROBA-V's cPSNR, and HighRes-net's
training loss, exist for this reason). The evaluation scores plain PSNR too: the bias-blind loss
leaves the output level to the network, which is why every network here adds an upsampled LR.

`sample(batch, sampler_cfg, generator)` is what `evaluate`, sweeps and reports call on any task: here
one deterministic forward pass (`nfe` 1, no uncertainty map; sampler settings and generator unused).
A subclass sets `stage`, builds its network in `configure_network` and maps a batch to its input in
`predict`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from ..data.lr_stack import bicubic_upsample, lr_band_count
from ..errors import UserError
from ..evaluation.metrics import MIN_MSE, registered_mse
from .base import SatTask

log = logging.getLogger(__name__)


@dataclass
class RegressionOutput:
    image: torch.Tensor  # B×C×H×W in [-1, 1]
    uncertainty: torch.Tensor | None = None  # regression baselines have none
    nfe: int = 1  # network evaluations per scene


def registration_tolerant_loss(output: torch.Tensor, hr: torch.Tensor, hr_mask: torch.Tensor | None = None,
                               max_shift: int = 3) -> torch.Tensor:
    """Mean over the batch of -cPSNR, in dB, on [0, 1] units; unclamped, so it has gradients everywhere."""
    mse = registered_mse((output.float() + 1) / 2, (hr.float() + 1) / 2, hr_mask, max_shift)
    return (10 * torch.log10(mse.clamp_min(MIN_MSE))).mean()


class RegressionTask(SatTask):
    validation_metrics = ("val/loss", "val/psnr", "val/ssim", "val/lpips")
    default_monitor = ("val/psnr", "max")
    produces_uncertainty = False  # evaluate reports the calibration metrics as unavailable
    uses_sampler = False  # one forward pass: its evaluations are named and compared without sampler settings
    uses_lr_stack = True  # False: one LR per scene, so train_lr_policy=pair is right

    def __init__(self, config: dict | DictConfig, networks: dict | None = None):
        super().__init__(config, networks)
        if lr_band_count(self.cfg.data) != self.cfg.data.channels:
            raise UserError(f"stage={self.stage} maps LR bands to the same HR bands; with data.lr_channels="
                            f"{self.cfg.data.lr_channels} use a diffusion stage with model.conditioning=multiband")
        if self.uses_lr_stack and self.cfg.data.train_lr_policy == "pair":
            log.warning("stage=%s fuses LR stacks but data.train_lr_policy=pair gives one LR per scene; "
                        "it will not learn to fuse (use data.train_lr_policy=all)", self.stage)
        self.network = self.configure_network(networks["network"] if networks is not None else None)
        self.finish_init()

    def configure_network(self, config: dict | None) -> torch.nn.Module:
        """The network from its stored constructor config, or from `cfg.model.regression` when None."""
        raise NotImplementedError

    def network_configs(self) -> dict:
        return {"network": dict(self.network.config)}

    def predict(self, batch: dict[str, Any]) -> torch.Tensor:
        """B×C×H×W output of the network, not clamped."""
        raise NotImplementedError

    def loss(self, output: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        return registration_tolerant_loss(output, batch["hr"], batch.get("hr_mask"),
                                          self.cfg.model.regression.max_shift)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self.predict(batch), batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["hr"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        hr = batch["hr"]
        size = hr.shape[0]
        output = self.predict(batch)
        self.val_loss.update(self.loss(output, batch).detach(), weight=size)
        self.log("val/loss", self.val_loss, on_epoch=True, batch_size=size)
        image = output.clamp(-1, 1)
        self.log_fidelity(image, hr)
        if batch_idx == 0:
            self.log_grid("val/samples", [bicubic_upsample(batch["lr"][:, 0], hr.shape[-1]), image, hr],
                          caption=f"bicubic LR[0] | {self.stage} | HR")

    @torch.no_grad()
    def sample(self, batch: dict[str, Any], sampler_cfg: Any = None,
               generator: torch.Generator | None = None) -> RegressionOutput:
        return RegressionOutput(image=self.predict(batch).clamp(-1, 1))

