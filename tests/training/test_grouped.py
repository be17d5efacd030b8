"""training.grouped: k replicas as one network with channels grouped by replica equal k separate
models (logits, gradients, BatchNorm statistics), and a stack's rows equal a smaller stack's."""

import pytest
import torch
from torch import nn

from training.functional import StackedModel
from training.grouped import _taps, grouped_logits, supports
from training.models import create_model


def lenet(name: str) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=4, in_channels=1, image_size=8)


def distinct(name: str, k: int, vectorize: bool = True) -> StackedModel:
    stack = StackedModel(lenet(name), k, vectorize=vectorize)
    with torch.no_grad():    # replicas differ, so a mixed-up replica would show
        gen = torch.Generator().manual_seed(2)
        stack.params.add_(0.05 * torch.randn(stack.params.shape, generator=gen))
    return stack


def batch(k: int, b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(k, b, 1, 8, 8, generator=gen), torch.randint(0, 4, (k, b), generator=gen)


def test_supports_lenet_with_a_norm_only():
    assert supports(lenet("gn-lenet")) and supports(lenet("bn-lenet"))
    assert not supports(lenet("lenet"))     # LRN mixes channels: vmap runs it
    assert not supports(create_model("alexnet", num_classes=4, in_channels=1, image_size=8))
    assert not supports(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2)))


def test_taps_that_meet_the_input():
    assert _taps(2, 5, 1, 2, 1) == range(1, 4)    # LeNet conv3 on 2x2: the central 3x3
    assert _taps(4, 5, 1, 2, 1) == range(0, 5)    # conv2 on 4x4: all
    assert _taps(8, 5, 1, 2, 1) == range(0, 5)
    assert _taps(1, 3, 1, 1, 1) == range(1, 2)    # a 3x3 conv on 1x1: the centre


@pytest.mark.parametrize("name", ["gn-lenet", "bn-lenet"])
def test_grouped_logits_equal_each_replica_alone(name):
    k = 3
    stack, x = distinct(name, k), batch(k)[0]
    stack.module.train()
    buffers = {n: b.clone() for n, b in stack.buffers.items()}
    logits = grouped_logits(stack.module, stack.layout.views(stack.params), buffers, x)
    for i in range(k):
        params, own = stack.replica(i)
        own = {n: b.clone() for n, b in own.items()}
        alone = torch.func.functional_call(stack.module, (params, own), (x[i],))
        assert torch.allclose(logits[i], alone, atol=1e-5)
        for n, b in own.items():   # BatchNorm statistics: updated in the stacked buffers
            assert torch.allclose(buffers[n][i].float(), b.float(), atol=1e-6), n


@pytest.mark.parametrize("name", ["gn-lenet", "bn-lenet"])
def test_grouped_gradients_equal_the_loop(name):
    k = 3
    x, y = batch(k)
    grouped, loop = distinct(name, k), distinct(name, k, vectorize=False)
    assert grouped.grouped and grouped.vectorize
    assert torch.allclose(grouped.gradients(x, y), loop.gradients(x, y), atol=1e-5)
    for n, b in grouped.buffers.items():
        assert torch.allclose(b.float(), loop.buffers[n].float(), atol=1e-6), n


def test_frozen_batch_norm_runs_in_eval_mode_on_the_grouped_path():
    """FixBN after its switch (StackedModel.norm_frozen): the grouped BN-LeNet normalises with
    the running statistics and leaves them alone, as the loop does."""
    k = 3
    x, y = batch(k)
    grouped, loop = distinct("bn-lenet", k), distinct("bn-lenet", k, vectorize=False)
    for stack in (grouped, loop):
        stack.gradients(x, y)              # statistics move off their initial values once
        stack.norm_frozen = True
    before = {n: b.clone() for n, b in grouped.buffers.items()}
    assert torch.allclose(grouped.gradients(x, y), loop.gradients(x, y), atol=1e-5)
    for n, b in grouped.buffers.items():
        assert torch.equal(b, before[n]), n
        assert torch.allclose(b.float(), loop.buffers[n].float(), atol=1e-6), n


@pytest.mark.parametrize("name", ["gn-lenet", "bn-lenet"])
def test_rows_of_a_larger_stack_are_bit_for_bit_a_smaller_stack(name):
    """What a seed group relies on: replicas 2..3 of a 6-stack compute exactly as a 2-stack."""
    x, y = batch(6)
    big = distinct(name, 6)
    small = StackedModel(lenet(name), 2, vectorize=True)
    with torch.no_grad():
        small.params.copy_(big.params[2:4])
    grads_big, grads_small = big.gradients(x, y), small.gradients(x[2:4], y[2:4])
    assert torch.equal(grads_big[2:4], grads_small)
    for n, b in big.buffers.items():
        assert torch.equal(b[2:4], small.buffers[n]), n


def test_predict_matches_the_module():
    stack = distinct("bn-lenet", 2)
    x = batch(1, 40)[0][0]
    params, buffers = stack.replica(1)
    stack.module.eval()
    expected = torch.func.functional_call(stack.module, (params, buffers), (x,)).argmax(dim=1)
    assert torch.equal(stack.predict(params, buffers, x, batch_size=16), expected)


def test_the_grouped_step_runs_no_nchw_max_pool():
    """The max pool runs on a channels-last map (PyTorch's NCHW CPU kernel is ~20x slower)."""
    seen = []

    class Spy(torch.utils._python_dispatch.TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten.max_pool2d_with_indices.default:
                seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
            return func(*args, **(kwargs or {}))

    stack, (x, y) = distinct("gn-lenet", 3), batch(3)
    with Spy():
        stack.gradients(x, y)
    assert seen and all(seen)


def test_cross_entropy_of_grouped_logits_is_per_replica():
    """Each replica's gradient is its own mean loss's, whatever the others' batches hold."""
    x, y = batch(2)
    stack = distinct("gn-lenet", 2)
    grads = stack.gradients(x, y)
    x2 = x.clone()
    x2[1] = torch.randn_like(x2[1])
    assert torch.equal(distinct("gn-lenet", 2).gradients(x2, y)[0], grads[0])


def test_grouped_gradients_do_not_depend_on_the_thread_count():
    """The study's numbers must not depend on the machine's cores (threads = 1 vs 2)."""
    x, y = batch(4)
    before = torch.get_num_threads()
    try:
        grads = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            grads.append(distinct("gn-lenet", 4).gradients(x, y))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(grads[0], grads[1])
