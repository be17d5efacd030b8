"""Replace every BatchNorm in a model with GroupNorm (docs/reference.md §3 "BN statistics", §5 #2).

BatchNorm normalises with minibatch statistics, which under label skew differ between partitions
and from the aggregated test-time statistics; GroupNorm has no cross-sample statistics. The paper's
GN-LeNet is BN-LeNet with each BatchNorm swapped for a 2-group GroupNorm, which is what
``convert_bn_to_gn(bn_lenet, num_groups=2)`` does.

Compared with Opacus's ``ModuleValidator.fix`` this conversion
- matches any ``_BatchNorm`` subclass (1d/2d/3d, SyncBatchNorm, user subclasses), not exact types;
- turns timm's ``BatchNormAct2d`` / ``SyncBatchNormAct`` into timm's ``GroupNormAct``, keeping the
  fused activation and drop layers;
- carries over the learned scale/shift (``weight``/``bias``), their ``requires_grad``, ``affine``,
  ``eps``, device, dtype and train/eval mode;
- picks a valid group count per layer when the channels don't divide.

Group count rule (documented decision): by default each layer gets the largest divisor of its
channel count that is ``<= max_groups`` (32, the GroupNorm paper's default). ``num_groups=G`` forces
``G`` wherever it divides the channels; elsewhere it falls back to the largest divisor below ``G``
and warns once, naming the layers.

The model is converted in place (like ``timm``'s ``freeze_batch_norm_2d``), walking
``named_children``; the return value is the model, or a new module when the root is a BatchNorm.
A BatchNorm instance shared by several parents becomes one shared GroupNorm.
"""

from __future__ import annotations

import warnings

import torch
from timm.layers import GroupNormAct
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

__all__ = ["convert_bn_to_gn", "default_num_groups"]


def default_num_groups(num_channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``num_channels`` that is ``<= max_groups`` (1 always divides)."""
    if num_channels < 1 or max_groups < 1:
        raise ValueError(
            f"num_channels and max_groups must be >= 1, got {num_channels} and {max_groups}"
        )
    return next(g for g in range(min(num_channels, max_groups), 0, -1) if num_channels % g == 0)


def convert_bn_to_gn(
    model: nn.Module,
    num_groups: int | None = None,
    *,
    max_groups: int = 32,
    eps: float | None = None,
) -> nn.Module:
    """Replace every BatchNorm in ``model`` with a GroupNorm carrying its affine parameters.

    Args:
        model: converted in place; the returned module must be used when ``model`` itself is a
            BatchNorm.
        num_groups: force this group count where it divides a layer's channels (else fall back,
            with one warning). ``None``: ``default_num_groups(channels, max_groups)`` per layer.
        max_groups: cap for the default rule.
        eps: GroupNorm epsilon; ``None`` keeps each BatchNorm's own.
    """
    if num_groups is not None and (not isinstance(num_groups, int) or num_groups < 1):
        raise ValueError(f"num_groups must be a positive int or None, got {num_groups!r}")
    if max_groups < 1:
        raise ValueError(f"max_groups must be >= 1, got {max_groups}")
    fallbacks: list[str] = []
    memo: dict[int, nn.Module] = {}
    out = _convert(model, "", num_groups, max_groups, eps, memo, fallbacks)
    if fallbacks:
        warnings.warn(
            f"num_groups={num_groups} does not divide the channels of {len(fallbacks)} layer(s); "
            f"used the largest divisor below it instead: {', '.join(fallbacks)}",
            stacklevel=2,
        )
    return out


def _convert(module: nn.Module, path: str, num_groups: int | None, max_groups: int,
             eps: float | None, memo: dict[int, nn.Module], fallbacks: list[str]) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    if isinstance(module, _BatchNorm):
        if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
            raise ValueError(
                f"{path or '<root>'} is an uninitialised lazy BatchNorm; run one forward pass "
                "before converting so its channel count is known"
            )
        groups = _choose_groups(module.num_features, num_groups, max_groups)
        if num_groups is not None and groups != num_groups:
            fallbacks.append(f"{path or '<root>'} ({module.num_features} ch -> {groups} groups)")
        new = _to_group_norm(module, groups, eps)
        memo[id(module)] = new
        return new
    # _modules rather than named_children(): the latter skips a child registered twice.
    for name, child in list(module._modules.items()):
        if child is None:
            continue
        new_child = _convert(child, f"{path}.{name}" if path else name, num_groups, max_groups,
                             eps, memo, fallbacks)
        if new_child is not child:
            setattr(module, name, new_child)
    memo[id(module)] = module
    return module


def _choose_groups(channels: int, num_groups: int | None, max_groups: int) -> int:
    if num_groups is None:
        return default_num_groups(channels, max_groups)
    if channels % num_groups == 0:
        return num_groups
    return default_num_groups(channels, num_groups)


def _to_group_norm(bn: _BatchNorm, groups: int, eps: float | None) -> nn.Module:
    channels = bn.num_features
    ref = bn.weight if bn.affine else bn.running_mean
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    eps = bn.eps if eps is None else eps
    if hasattr(bn, "act") and hasattr(bn, "drop"):
        # timm's BatchNormAct2d / SyncBatchNormAct: keep its fused drop and activation modules.
        gn: nn.GroupNorm = GroupNormAct(channels, groups, eps=eps, affine=bn.affine,
                                        apply_act=False, **factory)
        gn.drop = bn.drop
        gn.act = bn.act
    else:
        gn = nn.GroupNorm(groups, channels, eps=eps, affine=bn.affine, **factory)
    if bn.affine:
        with torch.no_grad():
            gn.weight.copy_(bn.weight)
            gn.bias.copy_(bn.bias)
        gn.weight.requires_grad_(bn.weight.requires_grad)
        gn.bias.requires_grad_(bn.bias.requires_grad)
    gn.train(bn.training)
    return gn
