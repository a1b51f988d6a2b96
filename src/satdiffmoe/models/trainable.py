"""Which parameters train (`train.trainable`): all, LoRA adapters (+ the new parts), or the new parts only.

LoRA goes through peft's integration in diffusers, `ModelMixin.add_adapter(LoraConfig(...))`, on every
outermost diffusers model inside the module that has it (the UNet of an `SDConditionalUNet`); a model
without diffusers' adapter mixin (the from-scratch `UNet2DModel` of `UNetDenoiser`) gets the same
adapters from peft directly (`inject_adapter_in_model`). Adapter weights are
ordinary parameters of the module afterwards (`...to_q.lora_A.default.weight`), so a Lightning
checkpoint's state dict holds them; to load one, build the module the same way, call
`apply_trainable` with the same settings, then `load_state_dict`. `merge_lora` folds the adapters into
the base weights for export (`save_pretrained` of a plain diffusers model).
"""

from __future__ import annotations

from collections.abc import Iterable

from diffusers.loaders.peft import PeftAdapterMixin
from torch import nn

TRAINABLE_MODES = ("all", "lora", "new_only")
# The attention projections, as in diffusers' SD LoRA training scripts (train_text_to_image_lora.py).
DEFAULT_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def lora_hosts(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The outermost diffusers models (with peft's `add_adapter`) inside `module`, itself included."""
    hosts = []
    for name, sub in module.named_modules():
        if isinstance(sub, PeftAdapterMixin) and not any(name.startswith(h + ".") or h == "" for h, _ in hosts):
            hosts.append((name, sub))
    return hosts


def matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def apply_trainable(module: nn.Module, mode: str, *, lora_rank: int = 8, lora_alpha: float | None = None,
                    target_modules: Iterable[str] = DEFAULT_LORA_TARGETS,
                    always_trainable: Iterable[str] | None = None) -> nn.Module:
    """Set `requires_grad` for `train.trainable=mode` (and add LoRA adapters for "lora"); returns `module`.

    `always_trainable` are parameter-name prefixes trained in "lora" and "new_only" (default: the
    module's `always_trainable` attribute, e.g. `SDConditionalUNet`'s conv_in, scalar embeddings and
    null tokens). `lora_alpha` defaults to `lora_rank` (scale 1).
    """
    if mode not in TRAINABLE_MODES:
        raise ValueError(f"train.trainable={mode!r}; choose one of {', '.join(TRAINABLE_MODES)}")
    if mode == "all":
        return module.requires_grad_(True)
    prefixes = tuple(getattr(module, "always_trainable", ()) if always_trainable is None else always_trainable)
    module.requires_grad_(False)
    if mode == "lora":
        from peft import LoraConfig

        hosts = lora_hosts(module)
        targets = list(target_modules)
        if not hosts:  # no diffusers adapter mixin (UNet2DModel): peft injects into the plain module
            _inject_lora(module, LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, target_modules=targets,
                                            init_lora_weights=True))
        for name, host in hosts:
            if getattr(host, "peft_config", None):
                raise ValueError(f"{name or type(host).__name__} already has LoRA adapters; apply_trainable "
                                 "adds them once, to a freshly built module")
            config = LoraConfig(r=lora_rank, lora_alpha=lora_alpha or lora_rank, target_modules=targets,
                                init_lora_weights=True)  # lora_B = 0: the adapted model starts as the base
            try:
                host.add_adapter(config)
            except ValueError as exc:
                raise ValueError(f"train.lora_targets={targets} on {name or type(host).__name__}: "
                                 f"{str(exc).splitlines()[0]}") from None
        for name, parameter in module.named_parameters():
            if ".lora_" in name:
                parameter.requires_grad_(True)
    names = [name for name, _ in module.named_parameters()]
    unknown = [prefix for prefix in prefixes if not any(matches(name, prefix) for name in names)]
    if unknown:
        raise ValueError(f"always-trainable prefixes {unknown} match no parameter of {type(module).__name__}")
    for name, parameter in module.named_parameters():
        if any(matches(name, prefix) for prefix in prefixes):
            parameter.requires_grad_(True)
    return module


def count_parameters(module: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; LoRA adapters count in both."""
    parameters = list(module.parameters())  # shared parameters appear once
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def merge_lora(module: nn.Module) -> nn.Module:
    """Fold every LoRA adapter into its base weights and remove the adapter layers (in place), leaving
    plain diffusers models that `save_pretrained` and pipelines take as they are."""
    for _, host in lora_hosts(module):
        if getattr(host, "peft_config", None):
            host.fuse_lora()
            host.unload_lora()
    from peft.tuners.lora import LoraLayer

    for name, layer in list(module.named_modules()):  # adapters peft injected directly (`_inject_lora`)
        if isinstance(layer, LoraLayer):
            layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(module.get_submodule(parent) if parent else module, child, layer.get_base_layer())
    return module


def _inject_lora(module: nn.Module, config) -> None:
    from peft import inject_adapter_in_model

    if any(getattr(sub, "peft_config", None) for sub in module.modules()):
        raise ValueError(f"{type(module).__name__} already has LoRA adapters; apply_trainable adds them once, "
                         "to a freshly built module")
    try:
        inject_adapter_in_model(config, module)
    except ValueError as exc:
        raise ValueError(f"train.lora_targets={list(config.target_modules)} on {type(module).__name__}: "
                         f"{str(exc).splitlines()[0]}") from None
