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

:func:`use_caffe_moving_average` swaps each BatchNorm for :class:`CaffeBatchNorm`, which keeps its
running statistics as Caffe's BatchNorm layer does (the authors' runs) instead of PyTorch's
momentum-0.1 average.

:func:`batch_norm_names` names the values that belong to BatchNorm layers (their affine
parameters and running statistics): what FedBN keeps local and FixBN freezes
(training.algorithms.fedbn, training.engine; docs/training.md "BatchNorm under skew").
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin

__all__ = ["NORM_STATS", "BatchNormNames", "CaffeBatchNorm", "batch_norm_names",
           "convert_bn_to_gn", "default_num_groups", "use_caffe_moving_average"]

# How BatchNorm layers get their statistics in training (TrainConfig.norm_stats): "batch" from
# each minibatch throughout; "fixbn" from each minibatch until the switch, then from the frozen
# global running statistics (Zhong et al. 2023)
NORM_STATS = ("batch", "fixbn")


def default_num_groups(num_channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``num_channels`` that is ``<= max_groups`` (1 always divides)."""
    if num_channels < 1 or max_groups < 1:
        raise ValueError(
            f"num_channels and max_groups must be >= 1, got {num_channels} and {max_groups}"
        )
    return next(g for g in range(min(num_channels, max_groups), 0, -1) if num_channels % g == 0)


@dataclass(frozen=True)
class BatchNormNames:
    """Qualified names (as ``named_parameters`` / ``named_buffers`` give them) of the values
    held by a model's BatchNorm layers."""

    params: frozenset[str]     # affine weight and bias
    buffers: frozenset[str]    # running mean / var and num_batches_tracked

    def __bool__(self) -> bool:
        return bool(self.params or self.buffers)


def batch_norm_names(model: nn.Module) -> BatchNormNames:
    """The parameters and buffers of every BatchNorm flavour in ``model`` (any ``_BatchNorm``
    subclass: 1d/2d/3d, SyncBatchNorm, :class:`CaffeBatchNorm`, timm's ``BatchNormAct2d``)."""
    params: set[str] = set()
    buffers: set[str] = set()
    for path, module in model.named_modules():
        if isinstance(module, _BatchNorm):
            prefix = f"{path}." if path else ""
            params.update(prefix + n for n, _ in module.named_parameters(recurse=False))
            buffers.update(prefix + n for n, _ in module.named_buffers(recurse=False))
    return BatchNormNames(frozenset(params), frozenset(buffers))


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


_PLAIN_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class CaffeBatchNorm(_BatchNorm):
    """BatchNorm whose running statistics follow Caffe's BatchNorm layer.

    Caffe keeps ``S = sum_i f^(t-i) x_i`` for the mean and the unbiased variance, and the counter
    ``C = sum_i f^(t-i)`` (``f = moving_average_fraction``, 0.999 by default); it evaluates with
    ``S / C``. That is an exponential average whose weight on the newest batch is
    ``(1 - f) / (1 - f^t)`` at the ``t``-th training batch: 1 at the first (no pull towards the
    zero start), 0.50025 at the second, ``1 - f`` = 0.001 in the long run. This layer stores
    ``S / C`` directly in ``running_mean`` / ``running_var`` (so evaluation is PyTorch's own) and
    reads ``t`` from ``num_batches_tracked``. Normalisation in training uses the batch statistics,
    as any BatchNorm. The update is made of tensor operations only, so it runs under ``vmap``
    with stacked buffers (training.functional).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True,
                 moving_average_fraction: float = 0.999, device: torch.device | None = None,
                 dtype: torch.dtype | None = None) -> None:
        if not 0 < moving_average_fraction < 1:
            raise ValueError(f"moving_average_fraction must be in (0, 1) (Caffe's default: "
                             f"0.999), got {moving_average_fraction}")
        super().__init__(num_features, eps, 1.0 - moving_average_fraction, affine, True,
                         device=device, dtype=dtype)
        self.moving_average_fraction = float(moving_average_fraction)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of at least 2 dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training:
            return super().forward(x)
        self.num_batches_tracked.add_(1)
        with torch.no_grad():
            dims = [0, *range(2, x.dim())]
            var, mean = torch.var_mean(x.detach().float(), dim=dims, correction=1)
            f = self.moving_average_fraction
            # in float64: at t = 1 the weight is exactly 1
            weight = (1.0 - f) / (1.0 - torch.pow(f, self.num_batches_tracked.double()))
            dtype = self.running_mean.dtype
            self.running_mean.lerp_(mean.to(dtype), weight.to(dtype))
            self.running_var.lerp_(var.to(dtype), weight.to(dtype))
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, affine={self.affine}, "
                f"moving_average_fraction={self.moving_average_fraction}")


def use_caffe_moving_average(model: nn.Module, fraction: float = 0.999) -> nn.Module:
    """Swap every ``BatchNorm1d/2d/3d`` in ``model`` (in place; a BN root returns a new module)
    for a :class:`CaffeBatchNorm` with the same parameters, buffers, device and mode.

    Other BatchNorm subclasses (SyncBatchNorm, timm's ``BatchNormAct2d``) raise ValueError: their
    forward does more than normalise, and this swap would drop it."""
    for path, module in model.named_modules():
        if (isinstance(module, _BatchNorm) and not isinstance(module, CaffeBatchNorm)
                and type(module) not in _PLAIN_BATCH_NORMS):
            raise ValueError(f"{path or '<root>'} is a {type(module).__name__}; the Caffe moving "
                             "average replaces only BatchNorm1d/2d/3d: use bn_average='pytorch' "
                             "for this model")
        if isinstance(module, _BatchNorm) and not module.track_running_stats:
            raise ValueError(f"{path or '<root>'} keeps no running statistics; the Caffe moving "
                             "average has nothing to average: use bn_average='pytorch'")
    return _swap_caffe(model, fraction, {})


def _swap_caffe(module: nn.Module, fraction: float, memo: dict[int, nn.Module]) -> nn.Module:
    if id(module) in memo:
        return memo[id(module)]
    if type(module) in _PLAIN_BATCH_NORMS:
        ref = module.running_mean
        new = CaffeBatchNorm(module.num_features, module.eps, module.affine, fraction,
                             device=ref.device, dtype=ref.dtype)
        new.load_state_dict(module.state_dict())
        if module.affine:
            new.weight.requires_grad_(module.weight.requires_grad)
            new.bias.requires_grad_(module.bias.requires_grad)
        new.train(module.training)
        memo[id(module)] = new
        return new
    for name, child in list(module._modules.items()):
        if child is not None:
            new_child = _swap_caffe(child, fraction, memo)
            if new_child is not child:
                setattr(module, name, new_child)
    memo[id(module)] = module
    return module
