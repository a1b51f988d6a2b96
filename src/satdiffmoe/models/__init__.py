"""Networks: diffusers builders and the plain `nn.Module`s around them (no Lightning, no data)."""

from .autoencoder import build_vae, load_pretrained_vae
from .denoisers import ControlNetDenoiser, Denoiser, DiffusionSatDenoiser, UNetDenoiser
from .time_embedding import ScalarEmbedding
from .unet import build_unet, load_pretrained_unet, with_extra_inputs

__all__ = ["ControlNetDenoiser", "Denoiser", "DiffusionSatDenoiser", "UNetDenoiser", "ScalarEmbedding", "build_unet", "build_vae", "load_pretrained_unet",
           "load_pretrained_vae", "with_extra_inputs"]
