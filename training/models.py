"""One factory over a registry of the paper's models, plus any timm / torchvision model by name.

docs/reference.md §3 "Models": LeNet, BN-LeNet, GN-LeNet, AlexNet, GoogLeNet, ResNet-20 (CIFAR
versions,
defined in ``training.models_cifar``); Flickr-Mammal uses ImageNet-style GoogLeNet / ResNet, which
come from timm (``"timm:resnet18"``) or torchvision (``"torchvision:googlenet"``).

Names: ``lenet``, ``alexnet``, ``googlenet``, ``resnet20``, each also with a ``bn-`` or ``gn-``
prefix (``bn-lenet`` = BN-LeNet, ``gn-lenet`` = GN-LeNet). ``norm=None`` uses the name's norm (the
prefix, else the paper's: none for LeNet/AlexNet/GoogLeNet, BatchNorm for ResNet-20). For timm /
torchvision models ``norm="gn"`` (or a ``gn-`` prefix: ``gn-timm:resnet18``) runs
:func:`training.norm.convert_bn_to_gn` on the built model.

``seed`` builds the weights from a fixed seed without touching the global RNG (the Trainer seeds
the global RNG itself, which is what makes every process start from the same model).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from training.models_cifar import NORMS, AlexNetCifar, GoogLeNetCifar, LeNet, ResNet20
from training.norm import convert_bn_to_gn

__all__ = ["ModelSpec", "create_model", "has_batch_norm", "list_models", "model_spec"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered CIFAR model: its builder, the paper's norm for it and its paper lr."""

    name: str
    builder: Callable[..., nn.Module]
    default_norm: str
    lr: float            # global-step learning rate in the paper (docs/reference.md §3)
    description: str


_REGISTRY: dict[str, ModelSpec] = {
    s.name: s for s in (
        ModelSpec("lenet", LeNet, "none", 0.01, "Caffe cifar10_full LeNet (conv 32-32-64, LRN)"),
        ModelSpec("alexnet", AlexNetCifar, "none", 0.001, "CIFAR AlexNet (conv 24-64-96-96-64)"),
        ModelSpec("googlenet", GoogLeNetCifar, "none", 0.01, "CIFAR GoogLeNet (inception 3a-5b)"),
        ModelSpec("resnet20", ResNet20, "bn", 0.01, "CIFAR ResNet-20 (16/32/64 channels)"),
    )
}
_PREFIXES = ("bn-", "gn-")
_EXTERNAL = ("timm:", "torchvision:")


def list_models() -> list[str]:
    """Every built-in name (also accepted: ``timm:<name>`` and ``torchvision:<name>``)."""
    return sorted([*_REGISTRY, *(p + n for p in _PREFIXES for n in _REGISTRY)])


def model_spec(name: str) -> ModelSpec:
    """The registry entry behind a built-in name (prefixes allowed)."""
    base, _ = _split_name(name)
    if base not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[base]


def create_model(
    name: str,
    *,
    num_classes: int,
    in_channels: int = 3,
    image_size: int = 32,
    norm: str | None = None,
    seed: int | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """Build a model by name; unknown names raise ``KeyError`` listing the known ones.

    ``image_size`` shapes the classifier of the CIFAR models (8 and up works); ``pretrained``
    only applies to timm / torchvision models and needs their weights in the local cache.
    """
    if num_classes < 1 or in_channels < 1:
        raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, "
                         f"{in_channels}")
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 (the pools need it), got {image_size}")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; use one of {NORMS} or None for the default")
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        base, prefix_norm = _split_name(name)
        if norm is not None and prefix_norm is not None and norm != prefix_norm:
            raise ValueError(f"{name!r} already fixes norm={prefix_norm!r}; drop norm={norm!r} "
                             f"or use the bare name {base!r}")
        chosen = norm or prefix_norm
        if base not in _REGISTRY:
            return _create_external(base, num_classes, in_channels, chosen, pretrained)
        spec = _REGISTRY[base]
        return spec.builder(num_classes, in_channels=in_channels, image_size=image_size,
                            norm=chosen or spec.default_norm)


def check_model_name(name: str) -> None:
    """Raise ``KeyError`` (listing the known names) for a name :func:`create_model` cannot
    build; ``timm:``/``torchvision:`` names are looked up only when built."""
    _split_name(name)


def has_batch_norm(name: str) -> bool | None:
    """Whether the model ``name`` builds has BatchNorm layers, told by its name alone: a
    ``bn-``/``gn-`` prefix, else a built-in's paper norm; None for an unprefixed
    ``timm:``/``torchvision:`` name (known once built)."""
    base, prefix_norm = _split_name(name)
    if prefix_norm is not None:
        return prefix_norm == "bn"
    return _REGISTRY[base].default_norm == "bn" if base in _REGISTRY else None


def _split_name(name: str) -> tuple[str, str | None]:
    """(the name without a ``bn-``/``gn-`` prefix, the prefix's norm or None): a lower-cased
    built-in name, or a ``timm:``/``torchvision:`` name as given (timm/torchvision decide case)."""
    prefix_norm, base = None, name
    if name.lower().startswith(_PREFIXES):
        prefix_norm, base = name[:2].lower(), name[3:]
    if base.lower().startswith(_EXTERNAL):
        return base, prefix_norm
    if base.lower() not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}, "
                       "or timm:<name> / torchvision:<name>")
    return base.lower(), prefix_norm


def _create_external(name: str, num_classes: int, in_channels: int, norm: str | None,
                     pretrained: bool) -> nn.Module:
    source, _, arch = name.partition(":")
    if norm == "none":
        raise ValueError(f"norm='none' is not supported for {name!r}: it cannot remove norm "
                         "layers from a timm/torchvision model; use 'bn' or 'gn'")
    if source.lower() == "timm":
        import timm

        model = timm.create_model(arch, pretrained=pretrained, num_classes=num_classes,
                                  in_chans=in_channels)
    else:
        model = _create_torchvision(arch, num_classes, in_channels, pretrained)
    return convert_bn_to_gn(model) if norm == "gn" else model


def _create_torchvision(arch: str, num_classes: int, in_channels: int,
                        pretrained: bool) -> nn.Module:
    import torchvision

    kwargs: dict = {"num_classes": num_classes, "weights": "DEFAULT" if pretrained else None}
    if arch in ("googlenet", "inception_v3"):
        # One logits tensor for the engines; torchvision otherwise adds auxiliary heads.
        kwargs |= {"aux_logits": False, "init_weights": True}
    try:
        model = torchvision.models.get_model(arch, **kwargs)
    except ValueError as err:
        raise KeyError(f"unknown torchvision model {arch!r}; known: "
                       f"{', '.join(torchvision.models.list_models())}") from err
    if in_channels != 3:
        _replace_first_conv(model, in_channels)
    return model


def _replace_first_conv(model: nn.Module, in_channels: int) -> None:
    """Swap the first 3-channel conv for one taking ``in_channels`` (same geometry)."""
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Conv2d) and child.in_channels == 3:
                setattr(parent, child_name, nn.Conv2d(
                    in_channels, child.out_channels, child.kernel_size, child.stride,
                    child.padding, child.dilation, child.groups, child.bias is not None))
                return
    raise ValueError("found no 3-channel Conv2d to adapt to in_channels")
