"""The paper's CIFAR-10 models, after the authors' Caffe prototxts (docs/reference.md §3 "Models").

- ``LeNet``: Caffe's cifar10_full (conv 32-32-64 5x5, max/avg pools 3/2, LRN). With ``norm="bn"``
  it is BN-LeNet (BatchNorm without affine, no conv bias, no LRN); with ``norm="gn"`` GN-LeNet
  (GroupNorm with 2 groups, no affine).
- ``AlexNetCifar``: conv 24(7x7)-64(5x5)-96-96-64(3x3), three max pools 3/2, fc 512, dropout, fc.
- ``GoogLeNetCifar``: GoogLeNet's inception 3a-5b on a 32x32 input (7x7/2 stem, LRN, max pools
  3/2); the last inception map is 1x1 at 32x32. Caffe's two auxiliary heads (loss weight 0.3) are
  left out because the engines train on one logits tensor.
- ``ResNet20``: 3 stages x 3 basic blocks (16/32/64 channels), conv bias + BN + scale,
  2x2/2 projection shortcuts, and, as in the authors' prototxt, no ReLU after the residual sum.

Caffe pools round the output size up: every pool here uses ``ceil_mode=True``. Pools that would
shrink an already 1x1 map (small inputs, e.g. 16x16 digits) are skipped, so every model works with
image sizes 8 to 32 and beyond.

Initialisation (:func:`caffe_init`): Caffe's ``xavier`` filler (uniform in ``±sqrt(3 / fan_in)``)
for every conv and fc weight, biases constant (0; GoogLeNet's conv biases 0.2, as in Caffe's
bvlc_googlenet prototxt). He initialisation (the earlier default, kept as :func:`he_init`) made
the un-normalised GoogLeNet diverge at the paper's lr 0.01 (loss 11 -> 5e3 -> 1e12 -> NaN in 4
steps). **decision** LeNet uses xavier too, not cifar10_full's gaussian stds (1e-4 / 1e-2):
those are calibrated for raw 0-255 pixels, our inputs are standardised.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from training.norm import default_num_groups

NORMS = ("none", "bn", "gn")


def norm_layer(norm: str, channels: int, *, affine: bool = True,
               gn_groups: int | None = None) -> nn.Module:
    """BatchNorm2d, GroupNorm (``gn_groups`` or the default rule) or Identity for ``"none"``."""
    if norm == "bn":
        return nn.BatchNorm2d(channels, affine=affine)
    if norm == "gn":
        return nn.GroupNorm(gn_groups or default_num_groups(channels), channels, affine=affine)
    if norm == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {norm!r}; use one of {NORMS}")


def pool_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """Caffe's (ceil-mode) pooled size; the last window must start inside the padded input."""
    out = math.ceil((size + 2 * padding - kernel) / stride) + 1
    if padding and (out - 1) * stride >= size + padding:
        out -= 1
    return max(out, 1)


def caffe_pool(kind: str, kernel: int, stride: int, size: int) -> tuple[nn.Module, int]:
    """A ceil-mode pool and its output size; Identity when the map is already 1x1."""
    if size <= 1:
        return nn.Identity(), size
    cls = nn.MaxPool2d if kind == "max" else nn.AvgPool2d
    return cls(kernel, stride, ceil_mode=True), pool_size(size, kernel, stride)


def caffe_init(model: nn.Module, conv_bias: float = 0.0) -> nn.Module:
    """Caffe's xavier filler (variance_norm FAN_IN) on conv/fc weights; conv biases
    ``conv_bias``, fc biases 0 (constant fillers)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            bound = math.sqrt(3.0 / m.weight[0].numel())   # fan_in = in_channels x kernel area
            nn.init.uniform_(m.weight, -bound, bound)
            if m.bias is not None:
                nn.init.constant_(m.bias, conv_bias if isinstance(m, nn.Conv2d) else 0.0)
    return model


def he_init(model: nn.Module) -> nn.Module:
    """He (fan_out) conv weights, N(0, 0.01) fc weights, zero biases (torchvision's CNNs)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def _conv_block(cin: int, cout: int, k: int, pad: int, norm: str, *, stride: int = 1,
                affine: bool = True, gn_groups: int | None = None) -> list[nn.Module]:
    """conv (bias only without a norm after it) -> norm -> ReLU."""
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=norm == "none")
    return [conv, norm_layer(norm, cout, affine=affine, gn_groups=gn_groups), nn.ReLU(inplace=True)]


class LeNet(nn.Module):
    """LeNet / BN-LeNet / GN-LeNet of the paper (Caffe cifar10_full layout)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 norm: str = "none") -> None:
        super().__init__()
        self.norm = norm   # training.protocol picks the authors' multipliers by it
        lrn = norm == "none"
        conv = {"affine": False, "gn_groups": 2}   # BN-LeNet: BN without scale; GN-LeNet: 2 groups
        s = image_size
        pool1, s = caffe_pool("max", 3, 2, s)
        pool2, s = caffe_pool("avg", 3, 2, s)
        pool3, s = caffe_pool("avg", 3, 2, s)
        c1, n1, r1 = _conv_block(in_channels, 32, 5, 2, norm, **conv)
        layers = [c1, pool1, n1, r1]
        layers += [nn.LocalResponseNorm(3, alpha=5e-5, beta=0.75, k=1.0)] if lrn else []
        layers += [*_conv_block(32, 32, 5, 2, norm, **conv), pool2]
        layers += [nn.LocalResponseNorm(3, alpha=5e-5, beta=0.75, k=1.0)] if lrn else []
        layers += [*_conv_block(32, 64, 5, 2, norm, **conv), pool3]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(64 * s * s, num_classes)
        caffe_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class AlexNetCifar(nn.Module):
    """The authors' CIFAR AlexNet (0.77M parameters at 32x32, 10 classes)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 norm: str = "none", dropout: float = 0.5) -> None:
        super().__init__()
        s = image_size
        pools = []
        for _ in range(3):
            pool, s = caffe_pool("max", 3, 2, s)
            pools.append(pool)
        self.features = nn.Sequential(
            *_conv_block(in_channels, 24, 7, 3, norm), pools[0],
            *_conv_block(24, 64, 5, 2, norm), pools[1],
            *_conv_block(64, 96, 3, 1, norm),
            *_conv_block(96, 96, 3, 1, norm),
            *_conv_block(96, 64, 3, 1, norm), pools[2],
        )
        self.classifier = nn.Sequential(
            nn.Linear(64 * s * s, 512), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(512, num_classes),
        )
        caffe_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class Inception(nn.Module):
    """Four branches (1x1; 1x1->3x3; 1x1->5x5; maxpool->1x1), concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, cp: int,
                 norm: str) -> None:
        super().__init__()
        def block(*convs: tuple[int, int, int, int]) -> nn.Sequential:
            return nn.Sequential(*(m for c in convs for m in _conv_block(*c, norm)))

        self.b1 = block((cin, c1, 1, 0))
        self.b3 = block((cin, c3r, 1, 0), (c3r, c3, 3, 1))
        self.b5 = block((cin, c5r, 1, 0), (c5r, c5, 5, 2))
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), *block((cin, cp, 1, 0)))
        self.out_channels = c1 + c3 + c5 + cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


# (c1, c3_reduce, c3, c5_reduce, c5, pool_proj) of GoogLeNet; "pool" marks a 3/2 max pool.
_GOOGLENET_PLAN = (
    (64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64), "pool",
    (192, 96, 208, 16, 48, 64), (160, 112, 224, 24, 64, 64), (128, 128, 256, 24, 64, 64),
    (112, 144, 288, 32, 64, 64), (256, 160, 320, 32, 128, 128), "pool",
    (256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128),
)


class GoogLeNetCifar(nn.Module):
    """The authors' CIFAR GoogLeNet (inception 3a-5b, 1024 features, no auxiliary heads)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 norm: str = "none") -> None:
        super().__init__()
        def lrn() -> list[nn.Module]:   # Caffe's GoogLeNet LRNs; dropped when a norm replaces them
            return [nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75)] if norm == "none" else []

        s = math.ceil(image_size / 2)            # 7x7 stride-2 conv, pad 3
        pool1, s = caffe_pool("max", 3, 2, s)
        pool2, s = caffe_pool("max", 3, 2, s)
        layers: list[nn.Module] = [
            *_conv_block(in_channels, 64, 7, 3, norm, stride=2), pool1, *lrn(),
            *_conv_block(64, 64, 1, 0, norm), *_conv_block(64, 192, 3, 1, norm),
            *lrn(), pool2,
        ]
        cin = 192
        for item in _GOOGLENET_PLAN:
            if item == "pool":
                pool, s = caffe_pool("max", 3, 2, s)
                layers.append(pool)
                continue
            block = Inception(cin, *item, norm=norm)
            layers.append(block)
            cin = block.out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))  # identity at 32x32
        self.classifier = nn.Linear(cin, num_classes)
        caffe_init(self, conv_bias=0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class BasicBlock(nn.Module):
    """conv-norm-ReLU-conv-norm plus the shortcut; no ReLU after the sum (authors' prototxt)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1), norm_layer(norm, cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1), norm_layer(norm, cout),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 2, stride), norm_layer(norm, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResNet20(nn.Module):
    """The authors' CIFAR ResNet-20 (0.28M parameters at 10 classes)."""

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: int = 32,
                 norm: str = "bn") -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, 1, 1), norm_layer(norm, 16),
                                   nn.ReLU(inplace=True)]
        cin = 16
        for stage, cout in enumerate((16, 32, 64)):
            for i in range(3):
                layers.append(BasicBlock(cin, cout, 2 if stage and i == 0 else 1, norm))
                cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        self.classifier = nn.Linear(64, num_classes)
        caffe_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))
