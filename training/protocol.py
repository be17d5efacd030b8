"""The authors' training protocol beyond the solver's scalars (docs/training.md "Deviations from
the authors"): per-layer learning-rate and weight-decay multipliers, and Caffe's BatchNorm
moving average.

Caffe gives every parameter blob an ``lr_mult`` and a ``decay_mult`` (default 1 and 1): its step
is ``lr * lr_mult`` and its L2 term ``weight_decay * decay_mult``. The authors' prototxts
(github.com/kevinhsieh/non_iid_dml, ``apps/caffe/examples/cifar10/5parts`` and
``geoanimal/5parts``) set them per family; :data:`CAFFE_RULES` holds them, keyed by the family
:func:`model_family` finds for a built model. :class:`ParamMultipliers` turns a rule into two
``[P]`` vectors in the engine's flat parameter order (training.functional.ParamLayout), which
the engine hands to every algorithm in its ``StepContext`` (training.algorithms.base).

:class:`Protocol` is the switch: ``layer_multipliers`` ``"none"`` (every multiplier 1) or
``"caffe"``; ``bn_average`` ``"pytorch"`` (momentum 0.1) or ``"caffe"``
(training.norm.CaffeBatchNorm, fraction ``bn_fraction``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from training.models_cifar import AlexNetCifar, GoogLeNetCifar, LeNet, ResNet20
from training.norm import use_caffe_moving_average

LAYER_MULTIPLIERS = ("none", "caffe")
BN_AVERAGES = ("pytorch", "caffe")


@dataclass(frozen=True)
class LayerParam:
    """One parameter tensor as a rule sees it."""

    name: str    # qualified parameter name (``classifier.bias``)
    kind: str    # "conv", "linear", "norm" (BatchNorm/GroupNorm/LayerNorm affine) or "other"
    role: str    # "weight" or "bias" (anything else counts as "weight")
    index: int   # position among the model's conv and linear layers (-1 for other kinds)
    count: int   # how many conv and linear layers the model has


Rule = Callable[[LayerParam], tuple[float, float]]   # -> (lr_mult, decay_mult)


def _weighted(p: LayerParam) -> bool:
    return p.kind in ("conv", "linear")


def _lenet(p: LayerParam) -> tuple[float, float]:
    """cifar10 5parts lenet: conv1/conv2 biases lr x2; conv3 all defaults; ip1 weight decay
    x250, ip1 bias lr x2 and no decay."""
    last = p.index == p.count - 1
    if _weighted(p) and last:
        return (2.0, 0.0) if p.role == "bias" else (1.0, 250.0)
    if _weighted(p) and p.role == "bias" and p.index < 2:
        return 2.0, 1.0
    return 1.0, 1.0


def _lenet_norm(p: LayerParam) -> tuple[float, float]:
    """bnlenet / gnlenet: bias-free convs; the ip1 bias is not decayed."""
    if _weighted(p) and p.role == "bias":
        return 1.0, 0.0
    return 1.0, 1.0


def _alexnet(p: LayerParam) -> tuple[float, float]:
    """alexnet: every bias but the last layer's lr x2 (still decayed); the last layer defaults."""
    if _weighted(p) and p.role == "bias" and p.index < p.count - 1:
        return 2.0, 1.0
    return 1.0, 1.0


def _googlenet(p: LayerParam) -> tuple[float, float]:
    """googlenet (cifar10) and googlenetv2 (geoanimal = Flickr-Mammal): biases lr x2, no decay.
    Norm affine parameters (none in the authors' nets) keep Caffe's Scale defaults."""
    if _weighted(p) and p.role == "bias":
        return 2.0, 0.0
    return 1.0, 1.0


def _resnet20(p: LayerParam) -> tuple[float, float]:
    """resnet20 / resnetgn20: conv and fc weights decay x2, biases no decay; the Scale layers
    (our affine BatchNorm/GroupNorm parameters) defaults."""
    if _weighted(p):
        return (1.0, 0.0) if p.role == "bias" else (1.0, 2.0)
    return 1.0, 1.0


CAFFE_RULES: dict[str, Rule] = {
    "lenet": _lenet,
    "lenet-norm": _lenet_norm,
    "alexnet": _alexnet,
    "googlenet": _googlenet,
    "resnet20": _resnet20,
    # timm / torchvision models: the authors' Flickr-Mammal net is googlenetv2
    "generic": _googlenet,
}


def model_family(module: nn.Module) -> str:
    """The :data:`CAFFE_RULES` key for a built model."""
    if isinstance(module, LeNet):
        return "lenet" if module.norm == "none" else "lenet-norm"
    if isinstance(module, AlexNetCifar):
        return "alexnet"
    if isinstance(module, GoogLeNetCifar):
        return "googlenet"
    if isinstance(module, ResNet20):
        return "resnet20"
    return "generic"


def layer_params(module: nn.Module) -> list[LayerParam]:
    """Every parameter of ``module`` in ``named_parameters`` order, with its layer's kind."""
    owners: dict[str, tuple[str, int]] = {}
    index = 0
    for path, sub in module.named_modules():
        kind = _kind(sub)
        for pname, _ in sub.named_parameters(recurse=False):
            owners[f"{path}.{pname}" if path else pname] = (kind, index)
        if kind in ("conv", "linear") and any(True for _ in sub.parameters(recurse=False)):
            index += 1
    out = []
    for name, _ in module.named_parameters():
        kind, at = owners[name]
        role = "bias" if name.rsplit(".", 1)[-1] == "bias" else "weight"
        out.append(LayerParam(name, kind, role, at if kind in ("conv", "linear") else -1, index))
    return out


def _kind(module: nn.Module) -> str:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, _BatchNorm | nn.GroupNorm | nn.LayerNorm):
        return "norm"
    return "other"


@dataclass(frozen=True)
class ParamMultipliers:
    """Per-value lr and weight-decay multipliers (``[P]`` each, the flat parameter order)."""

    lr: torch.Tensor
    decay: torch.Tensor
    family: str
    table: tuple[tuple[str, float, float], ...]   # (parameter name, lr_mult, decay_mult)

    @classmethod
    def of(cls, module: nn.Module, family: str | None = None) -> ParamMultipliers:
        """The Caffe multipliers of ``module`` (its :func:`model_family` unless given)."""
        family = model_family(module) if family is None else family
        if family not in CAFFE_RULES:
            raise ValueError(f"unknown model family {family!r}; known: "
                             f"{', '.join(sorted(CAFFE_RULES))}")
        rule = CAFFE_RULES[family]
        lr, decay, table = [], [], []
        for p, (_, tensor) in zip(layer_params(module), module.named_parameters(), strict=True):
            lr_mult, decay_mult = rule(p)
            lr.append(torch.full((tensor.numel(),), lr_mult))
            decay.append(torch.full((tensor.numel(),), decay_mult))
            table.append((p.name, lr_mult, decay_mult))
        empty = torch.zeros(0)
        return cls(torch.cat(lr) if lr else empty, torch.cat(decay) if decay else empty,
                   family, tuple(table))

    def to(self, device: str | torch.device) -> ParamMultipliers:
        return ParamMultipliers(self.lr.to(device), self.decay.to(device), self.family,
                                self.table)


@dataclass(frozen=True)
class Protocol:
    """Which of the authors' protocol pieces a run uses (all off: PyTorch's conventions)."""

    layer_multipliers: str = "none"
    bn_average: str = "pytorch"
    bn_fraction: float = 0.999   # Caffe's moving_average_fraction, used by bn_average="caffe"

    def __post_init__(self) -> None:
        if self.layer_multipliers not in LAYER_MULTIPLIERS:
            raise ValueError(f"layer_multipliers must be one of {LAYER_MULTIPLIERS} ('caffe': "
                             f"the authors' per-layer lr/decay), got {self.layer_multipliers!r}")
        if self.bn_average not in BN_AVERAGES:
            raise ValueError(f"bn_average must be one of {BN_AVERAGES} ('caffe': Caffe's "
                             f"BatchNorm moving average), got {self.bn_average!r}")
        if not 0 < self.bn_fraction < 1:
            raise ValueError(f"bn_fraction must be in (0, 1) (Caffe's default 0.999), "
                             f"got {self.bn_fraction}")

    def prepare(self, module: nn.Module) -> tuple[nn.Module, ParamMultipliers | None]:
        """The model to train (BatchNorms swapped when ``bn_average="caffe"``) and its
        multipliers (None when every multiplier is 1: the algorithms then skip them)."""
        if self.bn_average == "caffe":
            module = use_caffe_moving_average(module, self.bn_fraction)
        if self.layer_multipliers == "none":
            return module, None
        return module, ParamMultipliers.of(module)
