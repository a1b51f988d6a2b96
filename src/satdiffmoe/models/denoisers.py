"""The denoisers: each method's network composition as one diffusers model.

Every denoiser maps a noisy latent to the model output (ε or v) for R rows:

    forward(z_t, t, cond, dt) -> Tensor          cond None = the unconditional input

and knows how classifier-free condition dropout applies to its own condition (`drop_condition`),
which training dropout and guidance at sampling both call, so the two agree by construction. They
are `ModelMixin` + `ConfigMixin`: `save_pretrained` / `from_pretrained` work as for any diffusers
model, and a pipeline folder holds one under `denoiser/` (pipelines/base.py).

* `UNetDenoiser`: a `UNet2DModel` over concat(z_t, condition) with scalar embeddings (Δt, GSD)
  added to its timestep embedding. With no condition channels it is the HR-only prior; with the LR
  condition and Δt it is SatDiffMoE's p(HR | one LR, Δt).
* `ControlNetDenoiser`: a frozen prior steered by one LR through a `UNet2DControlNet` (+ Δt embedding).
* `DiffusionSatDenoiser`: a frozen prior steered by a T-frame LR stack through a `TemporalControlNet`
  with per-frame metadata embeddings.
* `SDUNetDenoiser`, `SDControlNetDenoiser`, `SDDiffusionSatDenoiser`: the same three on a Stable
  Diffusion `UNet2DConditionModel` (models/stable_diffusion.py), the ControlNets built on diffusers'
  own `ControlNetModel`.

A condition `cond` is a tensor (the condition image rows) or a dict: `image` (R×C×h×w, or R×T×C×h×w
for DiffusionSat), `gsd` (R), DiffusionSat's `valid` (R×T) and `meta_<field>` (R×T).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Sequence

import torch
from diffusers import ConfigMixin, ControlNetModel, ModelMixin, UNet2DModel
from diffusers.configuration_utils import register_to_config
from torch import nn

from .condition_encoder import ConditionEncoder
from .controlnet import UNet2DControlNet, unet_forward_with_control
from .controlnet3d import SDTemporalControlNet, TemporalControlNet
from .metadata_embedding import MetadataEmbedding
from .portable import portable_config
from .stable_diffusion import SDConditionalUNet, controlnet_from_sd_unet, with_extra_sd_inputs
from .time_embedding import ScalarEmbedding
from .unet import with_extra_inputs

Cond = torch.Tensor | dict[str, torch.Tensor] | None


_COPYING = contextvars.ContextVar("denoiser_copying", default=False)


@contextlib.contextmanager
def copying():
    """Around building a denoiser that copies networks whose weights are loaded right after."""
    token = _COPYING.set(True)
    try:
        yield
    finally:
        _COPYING.reset(token)


def weights_to_come(build: Callable[[], nn.Module]) -> nn.Module:
    """Build a network; inside `copying()` (its weights come from the network it copies) without moving
    torch's global RNG, so the genuinely new modules built after it (embeddings, encoders) draw exactly
    what they would without the copy, and a stage starts from the random state it always had."""
    if not _COPYING.get():
        return build()
    with torch.random.fork_rng(devices=[]):
        return build()


def split_condition(cond: Cond, dt: torch.Tensor | None) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """(condition image or None, scalar values by name) of a concat-UNet condition; Δt counts only
    with a condition (the unconditional input is "unknown Δt")."""
    scalars: dict[str, torch.Tensor] = {}
    image = None
    if isinstance(cond, dict):
        image = cond.get("image")
        scalars.update({key: value for key, value in cond.items() if key != "image"})
    elif cond is not None:
        image = cond
    if cond is not None and dt is not None:
        scalars["dt"] = dt
    return image, scalars


def encoded_condition(denoiser: nn.Module, image: torch.Tensor | None, z_t: torch.Tensor) -> torch.Tensor:
    """The concat-UNet's condition channels: the image as given (already on the latent grid), or the
    learned encoding of a multiband LR at HR size (`condition_encoder`). The unconditional input is a
    zero image before the encoder, exactly what condition dropout trains on."""
    encoder = getattr(denoiser, "condition_encoder", None)
    rows, size = z_t.shape[0], z_t.shape[2:]
    if encoder is None:
        return image if image is not None else z_t.new_zeros((rows, denoiser.cond_channels, *size))
    if image is None:
        factor = encoder.downsample_factor
        image = z_t.new_zeros((rows, encoder.in_channels, size[0] * factor, size[1] * factor))
    return encoder(image)


def zero_condition(controlnet_config, z_t: torch.Tensor) -> torch.Tensor:
    """A ControlNet's unconditional image: zeros of its condition's shape, at the latent size or, when
    its conditioning embedding downsamples (a multiband LR at HR size), at that many times more."""
    factor = 2 ** (len(controlnet_config.conditioning_embedding_out_channels) - 1)
    return z_t.new_zeros((z_t.shape[0], controlnet_config.conditioning_channels,
                          z_t.shape[2] * factor, z_t.shape[3] * factor))


class Denoiser(ModelMixin, ConfigMixin):
    """What every denoiser shares: the call signature and condition dropout."""

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def drop_condition(self, cond: Cond, dt: torch.Tensor | None, drop: torch.Tensor) -> tuple[Cond, torch.Tensor | None]:
        """Rows where `drop` is True become the unconditional input: a zero image condition and an
        "unknown" (NaN) Δt. Metadata of the HR itself (GSD) stays known: the output's resolution is not
        what guidance steers, and the prior (frozen in the baselines) never learned an "unknown" GSD."""
        def zero(tensor: torch.Tensor) -> torch.Tensor:
            mask = drop.view(-1, *([1] * (tensor.dim() - 1)))
            return torch.where(mask, torch.zeros_like(tensor), tensor)

        if isinstance(cond, dict):
            cond = {key: zero(value) if key == "image" else value for key, value in cond.items()}
        elif cond is not None:
            cond = zero(cond)
        if dt is not None:
            dt = torch.where(drop, torch.full_like(dt, float("nan")), dt)
        return cond, dt


class UNetDenoiser(Denoiser):
    """A UNet over concat(z_t, condition image) with scalar embeddings added to the timestep embedding.

    `from_prior` copies a prior with zero-initialised new inputs (extra conv_in channels, new scalar
    embeddings whose last layer starts at zero), so step 0 computes exactly the prior.
    """

    @register_to_config
    def __init__(self, unet_config: dict, cond_channels: int = 0, scalar_names: Sequence[str] = (),
                 encoder_config: dict | None = None):
        super().__init__()
        scalar_names = list(scalar_names)
        if scalar_names and unet_config.get("class_embed_type") != "identity":
            raise ValueError("scalar embeddings need a UNet2DModel with class_embed_type='identity'")
        self.unet = weights_to_come(lambda: UNet2DModel.from_config(unet_config))
        self.cond_channels = int(cond_channels)
        time_embed_dim = self.unet.time_embedding.linear_2.out_features
        self.scalars = nn.ModuleDict({name: ScalarEmbedding(time_embed_dim) for name in scalar_names})
        if encoder_config is not None:  # (a config key named like the module would shadow it)
            self.condition_encoder = ConditionEncoder(**encoder_config)

    @property
    def latent_channels(self) -> int:
        return self.unet.config.out_channels

    @classmethod
    def from_unet(cls, unet: UNet2DModel, cond_channels: int = 0, scalar_names: Sequence[str] = (),
                  condition_encoder: dict | None = None) -> UNetDenoiser:
        """Wrap a built (or pretrained) UNet, keeping its weights."""
        with copying():
            model = cls(unet_config=portable_config(unet.config), cond_channels=cond_channels,
                        scalar_names=list(scalar_names), encoder_config=condition_encoder)
        model.unet.load_state_dict(unet.state_dict())
        return model

    @classmethod
    def from_prior(cls, prior: UNetDenoiser, cond_channels: int, scalar_names: Sequence[str],
                   condition_encoder: dict | None = None) -> UNetDenoiser:
        """Copy the prior; new input channels and new scalar embeddings start at zero (output = prior's).

        With a `condition_encoder` (multiband LR) the encoder's output starts at zero instead and the new
        conv_in channels get diffusers' default init: both at zero would never receive a gradient."""
        scalar_names = list(scalar_names)
        unet = with_extra_inputs(prior.unet, cond_channels - prior.cond_channels, class_embedding=bool(scalar_names),
                                 zero_extra=condition_encoder is None)
        model = cls.from_unet(unet, cond_channels, scalar_names, condition_encoder)
        for name, embedding in prior.scalars.items():
            if name in model.scalars:
                model.scalars[name].load_state_dict(embedding.state_dict())
        return model

    def class_labels(self, rows: int, scalars: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | None:
        """Σ of this UNet's scalar embeddings (absent values embed as "unknown"), or None without any."""
        if not self.scalars:
            return None
        nan = torch.full((rows,), float("nan"), device=device)
        return sum(emb(scalars.get(name, nan)) for name, emb in self.scalars.items())

    @property
    def always_trainable(self) -> tuple[str, ...]:
        """What `train.trainable=lora|new_only` keeps trainable: the new inputs (models/trainable.py)."""
        encoder = ("condition_encoder",) if self.config.encoder_config else ()
        return ("unet.conv_in", *(f"scalars.{name}" for name in self.scalars), *encoder)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        rows = z_t.shape[0]
        image, scalars = split_condition(cond, dt)
        if self.cond_channels:
            image = encoded_condition(self, image, z_t)
            z_t = torch.cat([z_t, image.to(z_t.dtype)], dim=1)
        return self.unet(z_t, t, class_labels=self.class_labels(rows, scalars, z_t.device)).sample


class SDUNetDenoiser(Denoiser):
    """`UNetDenoiser`'s contract on a Stable Diffusion `UNet2DConditionModel` (models/stable_diffusion.py):
    concat(z_t, condition) through zero-initialised extra conv_in channels, Δt / GSD embeddings through
    an identity class embedding, cross-attention fed a fixed prompt embedding (or learned null tokens).

    `backbone` is `SDConditionalUNet.config_for_rebuild()`: the module rebuilds without the SD folder.
    """

    @register_to_config
    def __init__(self, backbone: dict, encoder_config: dict | None = None):
        super().__init__()
        self.model = weights_to_come(lambda: SDConditionalUNet.from_rebuild_config(backbone))
        if encoder_config is not None:  # (a config key named like the module would shadow it)
            self.condition_encoder = ConditionEncoder(**encoder_config)

    @classmethod
    def from_model(cls, model: SDConditionalUNet, condition_encoder: dict | None = None) -> SDUNetDenoiser:
        with copying():
            denoiser = cls(backbone=model.config_for_rebuild(), encoder_config=condition_encoder)
        denoiser.model.load_state_dict(model.state_dict())
        return denoiser

    @classmethod
    def from_prior(cls, prior: SDUNetDenoiser, cond_channels: int, scalar_names: Sequence[str],
                   condition_encoder: dict | None = None) -> SDUNetDenoiser:
        """As `UNetDenoiser.from_prior`, on the SD prior."""
        model = SDConditionalUNet.from_prior(prior.model, cond_channels, scalar_names,
                                             zero_cond_weights=condition_encoder is None)
        return cls.from_model(model, condition_encoder)

    @property
    def cond_channels(self) -> int:
        return self.model.cond_channels

    @property
    def scalars(self) -> nn.ModuleDict:
        return self.model.scalars

    @property
    def unet(self):
        return self.model.unet

    @property
    def always_trainable(self) -> tuple[str, ...]:
        encoder = ("condition_encoder",) if self.config.encoder_config else ()
        return (*(f"model.{prefix}" for prefix in self.model.always_trainable), *encoder)

    def class_labels(self, rows: int, scalars: dict[str, torch.Tensor], device: torch.device) -> torch.Tensor | None:
        return self.model.class_labels(scalars, torch.empty(rows, device=device))

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        image, scalars = split_condition(cond, dt)
        if self.cond_channels:
            image = encoded_condition(self, image, z_t)
        return self.model(z_t, t, image, scalars)


class ControlledPriorDenoiser(Denoiser):
    """A frozen `UNetDenoiser` prior that a trainable control branch steers (both baselines)."""

    def freeze_prior(self) -> None:
        self.prior.requires_grad_(False)
        self.prior.eval()

    @classmethod
    def assemble(cls, prior: Denoiser, controlnet: nn.Module, **config):
        """This denoiser around `prior` and a control branch built from it, both with their weights."""
        with copying():
            model = cls(prior_config=portable_config(prior.config),
                        controlnet_config=portable_config(controlnet.config), **config)
        model.prior.load_state_dict(prior.state_dict())
        model.controlnet.load_state_dict(controlnet.state_dict())
        return model

    def control_inputs(self, z_t: torch.Tensor, cond: Cond, dt: torch.Tensor | None):
        """(control image, Δt embedding or None) of a one-LR ControlNet; the unconditional input is what
        condition dropout trains: a zero image and an unknown Δt."""
        if cond is None:
            image, dt = zero_condition(self.controlnet.config, z_t), None
        else:
            image = cond["image"] if isinstance(cond, dict) else cond
        if not self.config.get("use_dt_embedding"):
            return image, None
        unknown = torch.full((z_t.shape[0],), float("nan"), device=z_t.device)
        return image, self.dt_embedding(dt if dt is not None else unknown)

    def train(self, mode: bool = True):
        super().train(mode)
        self.prior.eval()  # frozen: its dropout stays off
        return self

    def prior_output(self, z_t: torch.Tensor, t: torch.Tensor, control, cond: Cond) -> torch.Tensor:
        """The prior's forward with the control residuals added (its own GSD embedding when it has one)."""
        scalars = cond if isinstance(cond, dict) else {}
        labels = self.prior.class_labels(z_t.shape[0], scalars, z_t.device)
        return unet_forward_with_control(self.prior.unet, z_t, t, control, class_labels=labels)


class ControlNetDenoiser(ControlledPriorDenoiser):
    """The ControlNet baseline: one LR condition (+ Δt embedded into the ControlNet's timestep embedding)."""

    @register_to_config
    def __init__(self, prior_config: dict, controlnet_config: dict, use_dt_embedding: bool = True,
                 conditioning_scale: float = 1.0):
        super().__init__()
        self.prior = weights_to_come(lambda: UNetDenoiser.from_config(prior_config))
        self.controlnet = weights_to_come(lambda: UNet2DControlNet.from_config(controlnet_config))
        if use_dt_embedding:  # (a config key named like the module would shadow it: diffusers' __getattr__)
            self.dt_embedding = ScalarEmbedding(self.controlnet.time_embed_dim)
        self.freeze_prior()

    @classmethod
    def from_prior(cls, prior: UNetDenoiser, conditioning_channels: int, dt_embedding: bool = True,
                   conditioning_scale: float = 1.0, embedding_widths: Sequence[int] = (32,)) -> ControlNetDenoiser:
        """`embedding_widths`: the conditioning embedding's widths, one per resolution; more than one
        downsamples a condition at HR size (a multiband LR) onto the latent grid, as SD's ControlNet."""
        controlnet = UNet2DControlNet.from_unet(prior.unet, conditioning_channels=conditioning_channels,
                                                conditioning_embedding_out_channels=tuple(embedding_widths))
        return cls.assemble(prior, controlnet, use_dt_embedding=dt_embedding, conditioning_scale=conditioning_scale)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        image, extra = self.control_inputs(z_t, cond, dt)
        control = self.controlnet(z_t, t, image, extra_emb=extra, conditioning_scale=self.config.conditioning_scale)
        return self.prior_output(z_t, t, control, cond)


class SDControlNetDenoiser(ControlledPriorDenoiser):
    """The ControlNet baseline on a Stable Diffusion prior: diffusers' own `ControlNetModel.from_unet`,
    its residuals entering through `down_block_additional_residuals` / `mid_block_additional_residual`.

    Δt is embedded (`ScalarEmbedding`, zero last layer) and added to the ControlNet's timestep
    embedding through its identity class embedding, as the `UNet2DModel` ControlNet's `extra_emb`;
    the prior's own GSD embedding reaches both networks the same way.
    """

    @register_to_config
    def __init__(self, prior_config: dict, controlnet_config: dict, use_dt_embedding: bool = True,
                 conditioning_scale: float = 1.0):
        super().__init__()
        self.prior = weights_to_come(lambda: SDUNetDenoiser.from_config(prior_config))
        self.controlnet = weights_to_come(lambda: ControlNetModel.from_config(controlnet_config))
        if use_dt_embedding:
            self.dt_embedding = ScalarEmbedding(self.controlnet.time_embedding.linear_2.out_features)
        self.freeze_prior()

    @classmethod
    def from_prior(cls, prior: SDUNetDenoiser, conditioning_channels: int, dt_embedding: bool = True,
                   conditioning_scale: float = 1.0, embedding_widths: Sequence[int] = (32,)) -> SDControlNetDenoiser:
        # an identity class embedding (no weights) lets the ControlNet take Δt and the prior's scalars
        labelled = bool(dt_embedding or prior.scalars)
        base = with_extra_sd_inputs(prior.unet, 0, class_embedding=labelled) if labelled else prior.unet
        controlnet = controlnet_from_sd_unet(base, conditioning_channels, tuple(embedding_widths))
        return cls.assemble(prior, controlnet, use_dt_embedding=dt_embedding, conditioning_scale=conditioning_scale)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        rows = z_t.shape[0]
        image, dt_emb = self.control_inputs(z_t, cond, dt)
        scalars = {k: v for k, v in cond.items() if k != "image"} if isinstance(cond, dict) else {}
        prior = self.prior.model
        labels = prior.class_labels(scalars, z_t)
        control_labels = labels if dt_emb is None else dt_emb if labels is None else labels + dt_emb
        hidden = prior.encoder_hidden_states(rows, z_t.dtype)
        down, mid = self.controlnet(z_t, t, hidden, controlnet_cond=image.to(z_t.dtype),
                                    conditioning_scale=self.config.conditioning_scale,
                                    class_labels=control_labels, return_dict=False)
        return prior.unet(z_t, t, hidden, class_labels=labels, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample


class DiffusionSatDenoiser(ControlledPriorDenoiser):
    """The DiffusionSat baseline: a T-frame stack through a 3D ControlNet with per-frame metadata."""

    prior_class, controlnet_class = UNetDenoiser, TemporalControlNet

    @register_to_config
    def __init__(self, prior_config: dict, controlnet_config: dict, metadata_fields: Sequence[str] = (),
                 conditioning_scale: float = 1.0):
        super().__init__()
        self.prior = weights_to_come(lambda: self.prior_class.from_config(prior_config))
        self.controlnet = weights_to_come(lambda: self.controlnet_class.from_config(controlnet_config))
        self.metadata = MetadataEmbedding(list(metadata_fields), self.controlnet.time_embed_dim)
        self.freeze_prior()

    @classmethod
    def from_prior(cls, prior: UNetDenoiser, conditioning_channels: int, frames: int, temporal_heads: int,
                   metadata_fields: Sequence[str], conditioning_scale: float = 1.0,
                   embedding_widths: Sequence[int] = (32,)) -> DiffusionSatDenoiser:
        controlnet = TemporalControlNet.from_unet(prior.unet, conditioning_channels=conditioning_channels,
                                                  num_frames=frames, temporal_heads=temporal_heads,
                                                  conditioning_embedding_out_channels=tuple(embedding_widths))
        return cls.assemble(prior, controlnet, metadata_fields=list(metadata_fields),
                            conditioning_scale=conditioning_scale)

    @property
    def frames(self) -> int:
        return int(self.controlnet.config.num_frames)

    @property
    def control_config(self):
        """The config of the network that takes the frames (its condition channels and embedding)."""
        return self.controlnet.config

    def drop_condition(self, cond: Cond, dt: torch.Tensor | None, drop: torch.Tensor) -> tuple[Cond, None]:
        """Dropped rows: no image, one valid frame, unknown per-frame metadata; the prior's GSD stays."""
        cond = dict(cond)
        first_only = torch.zeros_like(cond["valid"])
        first_only[:, 0] = True
        cond["valid"] = torch.where(drop[:, None], first_only, cond["valid"])
        cond["image"] = torch.where(drop.view(-1, 1, 1, 1, 1), torch.zeros_like(cond["image"]), cond["image"])
        for key in [k for k in cond if k.startswith("meta_")]:
            cond[key] = torch.where(drop[:, None], torch.full_like(cond[key], float("nan")), cond[key])
        return cond, None

    def unconditional(self, z_t: torch.Tensor) -> dict[str, torch.Tensor]:
        rows, frames = z_t.shape[0], self.frames
        cond = {"image": zero_condition(self.control_config, z_t)[:, None].expand(-1, frames, -1, -1, -1),
                "valid": torch.zeros((rows, frames), dtype=torch.bool, device=z_t.device)}
        cond["valid"][:, 0] = True
        for name in self.metadata.fields:
            cond[f"meta_{name}"] = torch.full((rows, frames), float("nan"), device=z_t.device)
        return cond

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        prior_cond = cond
        if cond is None:
            cond = self.unconditional(z_t)
        metadata = {key[len("meta_"):]: value for key, value in cond.items() if key.startswith("meta_")}
        control = self.controlnet(z_t, t, cond["image"], cond["valid"], self.metadata(metadata),
                                  conditioning_scale=self.config.conditioning_scale)
        return self.prior_output(z_t, t, control, prior_cond)


class SDDiffusionSatDenoiser(DiffusionSatDenoiser):
    """The DiffusionSat baseline on a Stable Diffusion prior: `SDTemporalControlNet` (diffusers'
    `ControlNetModel` per frame + temporal attention), residuals through diffusers' own arguments."""

    prior_class, controlnet_class = SDUNetDenoiser, SDTemporalControlNet  # DiffusionSatDenoiser builds them

    @classmethod
    def from_prior(cls, prior: SDUNetDenoiser, conditioning_channels: int, frames: int, temporal_heads: int,
                   metadata_fields: Sequence[str], conditioning_scale: float = 1.0,
                   embedding_widths: Sequence[int] = (32,)) -> SDDiffusionSatDenoiser:
        labelled = bool(prior.scalars)  # the prior's GSD reaches the ControlNet through an identity class embedding
        base = with_extra_sd_inputs(prior.unet, 0, class_embedding=True) if labelled else prior.unet
        controlnet = SDTemporalControlNet.from_controlnet(
            controlnet_from_sd_unet(base, conditioning_channels, tuple(embedding_widths)), frames, temporal_heads)
        return cls.assemble(prior, controlnet, metadata_fields=list(metadata_fields),
                            conditioning_scale=conditioning_scale)

    @property
    def control_config(self):
        return self.controlnet.controlnet.config

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, cond: Cond = None,
                dt: torch.Tensor | None = None) -> torch.Tensor:
        prior_cond = cond
        if cond is None:
            cond = self.unconditional(z_t)
        metadata = {key[len("meta_"):]: value for key, value in cond.items() if key.startswith("meta_")}
        prior = self.prior.model
        labels = prior.class_labels(prior_cond if isinstance(prior_cond, dict) else {}, z_t)
        hidden = prior.encoder_hidden_states(z_t.shape[0], z_t.dtype)
        down, mid = self.controlnet(z_t, t, hidden, cond["image"], cond["valid"], self.metadata(metadata),
                                    class_labels=labels, conditioning_scale=self.config.conditioning_scale)
        return prior.unet(z_t, t, hidden, class_labels=labels, down_block_additional_residuals=down,
                          mid_block_additional_residual=mid).sample


# class name -> class: how a checkpoint's stored denoiser config finds its class again
DENOISERS: dict[str, type[Denoiser]] = {cls.__name__: cls for cls in (
    UNetDenoiser, SDUNetDenoiser, ControlNetDenoiser, SDControlNetDenoiser, DiffusionSatDenoiser,
    SDDiffusionSatDenoiser)}
