"""StackedModel: the per-partition loop has per-replica leaves (no O(k^2) zero-fills), equals vmap,
and vmap is chosen once before any step (errors mid-step propagate)."""

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from training.functional import StackedModel


def bn_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 5))


def batch(k: int, b: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(k, b, 1, 4, 4, generator=gen), torch.randint(0, 5, (k, b), generator=gen)


def distinct_stack(k: int, vectorize: bool) -> StackedModel:
    stack = StackedModel(bn_net(), k, vectorize=vectorize)
    with torch.no_grad():   # replicas differ, so a mixed-up replica would show
        stack.params.add_(0.1 * torch.randn(stack.params.shape,
                                            generator=torch.Generator().manual_seed(2)))
    return stack


def test_loop_gradients_equal_vmap_gradients_and_buffers():
    x, y = batch(3)
    loop, vmapped = distinct_stack(3, False), distinct_stack(3, True)
    assert torch.allclose(loop.gradients(x, y), vmapped.gradients(x, y), atol=1e-5)
    for name, buffer in loop.buffers.items():
        assert torch.allclose(buffer.float(), vmapped.buffers[name].float(), atol=1e-6), name


class ShapeLog(TorchDispatchMode):
    """Records the shape of every tensor an op produces."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
                self.dtypes.add(t.dtype)
        return out


def test_loop_backward_makes_no_stacked_gradient_buffers():
    k = 7
    stack = distinct_stack(k, False)
    x, y = batch(k)
    stacked = {(k, *shape) for shape in stack.layout.shapes}   # [k, *shape] per parameter
    with ShapeLog() as log:
        stack.gradients(x, y)
    assert not stacked & set(log.shapes)
    leaves = [stack.replica_leaves(i) for i in range(2)]
    for name, shape in zip(stack.layout.names, stack.layout.shapes, strict=True):
        assert leaves[0][name].is_leaf and leaves[0][name].shape == shape
        assert leaves[0][name] is not leaves[1][name]


class FailsLater(nn.Module):
    """A linear model whose forward raises a CUDA-OOM-like RuntimeError once armed."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.armed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.armed:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.linear(x)


def test_an_error_mid_step_propagates_and_keeps_vmap():
    stack = StackedModel(FailsLater(), 2, vectorize=True)
    x, y = torch.randn(2, 3, 4), torch.randint(0, 3, (2, 3))
    stack.gradients(x, y)                      # probe + first step: vmap works
    stack.module.armed = True
    with pytest.raises(RuntimeError, match="out of memory"):
        stack.gradients(x, y)
    assert stack.vectorize is True


class NotVmappable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn(self.linear(x))
        return out * 2 if out.sum().item() > -1e9 else out   # .item() has no batching rule


def test_a_model_vmap_cannot_run_is_found_before_any_step():
    stack = StackedModel(NotVmappable(), 2, vectorize=True)
    before = {n: b.clone() for n, b in stack.buffers.items()}
    x, y = torch.randn(2, 3, 4), torch.randint(0, 3, (2, 3))
    grads = stack.gradients(x, y)
    assert stack.vectorize is False
    reference = StackedModel(NotVmappable(), 2, vectorize=False)
    reference.params.copy_(stack.params)
    assert torch.allclose(grads, reference.gradients(x, y))
    # the probe left the running statistics alone: one step's update only
    assert torch.equal(stack.buffers["bn.num_batches_tracked"],
                       before["bn.num_batches_tracked"] + 1)


def test_bf16_autocast_and_channels_last_keep_float32_gradients():
    x, y = batch(2)
    plain = distinct_stack(2, False)
    fast = distinct_stack(2, False)
    fast.bf16, fast.channels_last = True, True
    reference = plain.gradients(x, y)
    with ShapeLog() as log:
        grads = fast.gradients(x, y)
    assert torch.bfloat16 in log.dtypes and grads.dtype == torch.float32
    assert torch.allclose(grads, reference, atol=0.05, rtol=0.05)


def test_channels_last_inputs_give_the_same_gradients_on_both_paths():
    x, y = batch(2)
    for vectorize in (False, True):
        plain, fast = distinct_stack(2, vectorize), distinct_stack(2, vectorize)
        fast.channels_last = True
        assert torch.allclose(fast.gradients(x, y), plain.gradients(x, y), atol=1e-5)
