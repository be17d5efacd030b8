"""``k`` replicas of a conv net as one network whose channels are grouped by replica.

For models as small as digits' LeNet, ``torch.func.vmap`` spends much of a step moving data
between the layouts its batching rules want (a ``[k, b, C, H, W]`` input becomes ``[b, k*C, H,
W]`` for the grouped convolution and ``[k*b, C, H, W]`` for the pools, each a copy), and PyTorch's
CPU max pool is ~20x slower on NCHW maps than on channels-last ones. This module runs the
replicas the way the grouped convolution already sees them, end to end, with no layout changes
between layers:

- activations are ``[b, k*C, H, W]``, replica ``r`` owning channels ``r*C .. r*C+C-1``;
- a convolution is one grouped convolution (``groups = k * conv.groups``) with the replicas'
  weights stacked along the output channels;
- GroupNorm with ``G`` groups is GroupNorm with ``k*G`` groups (each replica's groups are whole),
  BatchNorm over ``k*C`` channels is each replica's BatchNorm (per-channel statistics, running
  statistics updated in place in the stacked buffers, as ``vmap`` does);
- ReLU and the average pool act per channel; the max pool runs on a channels-last copy (the same
  maxima, ~20x faster on CPU) and comes back to NCHW;
- the classifier is one batched matmul over the replicas.

Each replica's computation is the same as alone (every op is per channel group, per replica), so
a stack of ``S*N`` replicas gives the rows a stack of ``N`` gives (tests/training/test_grouped.py).
Only LeNets made of these layers are run this way (:func:`supports`: GN-LeNet, BN-LeNet);
anything else (LRN, dropout, other models, Caffe's BatchNorm average) goes through ``vmap``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.models_cifar import LeNet

Tensors = dict[str, torch.Tensor]

_LAYERS = (nn.Conv2d, nn.GroupNorm, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
           nn.Identity)


def supports(module: nn.Module) -> bool:
    """Whether :func:`grouped_logits` can run ``module``: a LeNet (whose forward is
    ``classifier(flatten(features(x)))``) whose ``features`` are convolutions, GroupNorm,
    BatchNorm2d, ReLU and max/avg pools only (GN-LeNet, BN-LeNet; not LRN LeNet)."""
    features = getattr(module, "features", None)
    classifier = getattr(module, "classifier", None)
    names = {name for name, _ in module.named_children()}
    return (type(module) is LeNet and isinstance(features, nn.Sequential)
            and type(classifier) is nn.Linear
            and names == {"features", "classifier"}
            and all(type(layer) in _LAYERS for layer in features)
            and all(layer.padding_mode == "zeros" for layer in features
                    if isinstance(layer, nn.Conv2d))
            and all(layer.track_running_stats for layer in features
                    if isinstance(layer, nn.BatchNorm2d)))


def grouped_logits(module: nn.Module, params: Tensors, buffers: Tensors,
                   x: torch.Tensor) -> torch.Tensor:
    """``[k, b, classes]`` logits of ``k`` replicas on their own batches ``x`` (``[k, b, C, H,
    W]``); ``params``/``buffers``: ``{name: [k, *shape]}`` (training mode updates the stacked
    BatchNorm buffers in place, as each replica alone would)."""
    k, b = x.shape[:2]
    h = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])
    training = module.training
    for index, layer in enumerate(module.features):
        prefix = f"features.{index}."
        h = _layer(layer, prefix, params, buffers, h, k, training)
    flat = h.reshape(b, k, -1).transpose(0, 1)                       # [k, b, F]
    weight = params["classifier.weight"]                            # [k, O, F]
    bias = params.get("classifier.bias")
    if bias is None:
        return torch.bmm(flat, weight.transpose(1, 2))
    return torch.baddbmm(bias.unsqueeze(1), flat, weight.transpose(1, 2))


def _flat(tensors: Tensors, name: str) -> torch.Tensor | None:
    """``[k, *shape]`` -> ``[k * shape[0], *shape[1:]]`` (the replicas' channels end to end)."""
    t = tensors.get(name)
    return None if t is None else t.reshape(-1, *t.shape[2:])


def _layer(layer: nn.Module, prefix: str, params: Tensors, buffers: Tensors, h: torch.Tensor,
           k: int, training: bool) -> torch.Tensor:
    if isinstance(layer, nn.Conv2d):
        return _conv(layer, params[prefix + "weight"], _flat(params, prefix + "bias"), h, k)
    if isinstance(layer, nn.GroupNorm):
        return F.group_norm(h.contiguous(), k * layer.num_groups,
                            _flat(params, prefix + "weight"), _flat(params, prefix + "bias"),
                            layer.eps)
    if isinstance(layer, nn.BatchNorm2d):
        # the layer's own mode: FixBN runs BatchNorm in eval mode inside a training step
        return _batch_norm(layer, prefix, params, buffers, h.contiguous(), layer.training)
    if isinstance(layer, nn.ReLU):
        return F.relu(h)
    if isinstance(layer, nn.MaxPool2d):
        # the same maxima as on NCHW; PyTorch's CPU kernel is ~20x faster channels-last
        return F.max_pool2d(h.contiguous(memory_format=torch.channels_last), layer.kernel_size,
                            layer.stride, layer.padding, layer.dilation, layer.ceil_mode)
    if isinstance(layer, nn.AvgPool2d):
        return F.avg_pool2d(h.contiguous(), layer.kernel_size, layer.stride, layer.padding,
                            layer.ceil_mode, layer.count_include_pad, layer.divisor_override)
    return h   # Identity


def _taps(size: int, kernel: int, stride: int, padding: int, dilation: int) -> range:
    """The kernel taps along one axis that ever meet the input (not only zero padding)."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    used = [t for t in range(kernel)
            if any(0 <= o * stride + t * dilation - padding < size for o in range(out))]
    return range(used[0], used[-1] + 1) if used else range(0)


def _conv(layer: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor | None, h: torch.Tensor,
          k: int) -> torch.Tensor:
    """The grouped convolution of the replicas (``weight``: ``[k, Cout, Cin, kh, kw]``), on the
    kernel taps that meet the input: on a map smaller than the kernel (LeNet's 5x5 conv3 on 2x2)
    the others only ever multiply padding, so they are cut (their gradient is zero either way)
    and the padding with them."""
    stride, padding, dilation = layer.stride, layer.padding, layer.dilation
    rows = _taps(h.shape[2], weight.shape[3], stride[0], padding[0], dilation[0])
    cols = _taps(h.shape[3], weight.shape[4], stride[1], padding[1], dilation[1])
    if (len(rows), len(cols)) != tuple(weight.shape[3:]) and len(rows) and len(cols):
        weight = weight[..., rows.start:rows.stop, cols.start:cols.stop]
        padding = (padding[0] - rows.start * dilation[0], padding[1] - cols.start * dilation[1])
    if weight.shape[2] == 1:   # one input channel per group: ~3x faster channels-last on CPU
        h = h.contiguous(memory_format=torch.channels_last)
    # one copy of the (sliced) weights: the replicas' rows are not adjacent in the flat stack
    return F.conv2d(h, weight.reshape(-1, *weight.shape[2:]), bias, stride, padding, dilation,
                    k * layer.groups)


def _batch_norm(layer: nn.BatchNorm2d, prefix: str, params: Tensors, buffers: Tensors,
                h: torch.Tensor, training: bool) -> torch.Tensor:
    """nn.BatchNorm2d's forward over the replicas' channels. In training the stacked running
    statistics are updated in place through flat views (``view``: never a silent copy)."""
    flat = (lambda t: t.view(-1)) if training else (lambda t: t.reshape(-1))
    mean = flat(buffers[prefix + "running_mean"])
    var = flat(buffers[prefix + "running_var"])
    momentum = layer.momentum
    if training:
        tracked = buffers[prefix + "num_batches_tracked"]
        tracked.add_(1)
        if momentum is None:     # cumulative average: every replica has taken as many batches
            momentum = 1.0 / float(tracked.reshape(-1)[0])
    return F.batch_norm(h, mean, var, _flat(params, prefix + "weight"),
                        _flat(params, prefix + "bias"), training, momentum or 0.0, layer.eps)
