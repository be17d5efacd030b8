"""Gaia's significance filter by hand, the threshold schedule, and T0=0 == BSP."""

import pytest
import torch

from tests.training.algorithm_helpers import run_beside_bsp
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0, lr=1.0, lr_factor=1.0, momentum=0.0, weight_decay=0.0, n=2):
    return StepContext(iteration=iteration, lr=lr, lr_factor=lr_factor, num_partitions=n,
                       momentum=momentum, weight_decay=weight_decay)


def test_sends_exactly_the_significant_elements():
    gaia = create_algorithm("gaia", t0=0.2)
    params = torch.tensor([[1.0, 0.1], [1.0, 0.1]])
    state = gaia.init(params)
    grads = torch.tensor([[-0.1, -0.1], [0.0, 0.0]])
    stats = gaia.apply(state, params, grads, ctx(), LocalComm(2))
    # partition 0's update (lr/N = 0.5) is +0.05 each; |0.05/1.05| < 0.2 < |0.05/0.15|
    assert torch.allclose(params, torch.tensor([[1.05, 0.15], [1.0, 0.15]]))
    assert torch.allclose(state.accumulated, torch.tensor([[0.05, 0.0], [0.0, 0.0]]))
    assert stats.bytes_sent.tolist() == [8.0, 0.0]
    assert stats.bytes_received.tolist() == [0.0, 8.0]
    assert not stats.synced


def test_a_traveled_model_is_judged_with_the_hosts_pending_updates_until_the_last_decay():
    gaia = create_algorithm("gaia", t0=0.2)
    params = torch.tensor([[1.0, 0.1], [1.0, 0.1]])
    state = gaia.init(params)
    gaia.apply(state, params, torch.tensor([[-0.1, -0.1], [0.0, 0.0]]), ctx(), LocalComm(2))
    gaia.apply(state, params, torch.tensor([[0.0, 0.0], [0.1, 0.0]]), ctx(), LocalComm(2))
    # partition 0 holds +0.05 on element 0, partition 1 holds -0.05 on element 0
    assert torch.allclose(state.accumulated, torch.tensor([[0.05, 0.0], [-0.05, 0.0]]))
    visitor = params[0].clone()                              # partition 0's model, at 1
    ahead = StepContext(iteration=5, lr=1.0, lr_factor=1.0, num_partitions=2,
                        final_lr_factor=0.01)
    assert ahead.decay_ahead
    judged = gaia.traveled_view(state, 1, visitor, ahead)
    # shared model + both partitions' pending updates: 1.0 + 0.05 - 0.05 on element 0
    assert torch.allclose(judged, torch.tensor([1.0, 0.15]))
    assert torch.allclose(judged - visitor, state.accumulated[1])
    last = StepContext(iteration=9, lr=0.01, lr_factor=0.01, num_partitions=2,
                       final_lr_factor=0.01)
    assert not last.decay_ahead and gaia.traveled_view(state, 1, visitor, last) is visitor


def test_threshold_falls_with_the_learning_rate():
    gaia = create_algorithm("gaia", t0=0.2)
    params = torch.tensor([[1.0, 0.1], [1.0, 0.1]])
    state = gaia.init(params)
    grads = torch.tensor([[-0.1, -0.1], [0.0, 0.0]])
    # T = 0.2 * 0.1 = 0.02 < 0.05 / 1.05: both elements go out now
    gaia.apply(state, params, grads, ctx(lr_factor=0.1), LocalComm(2))
    assert torch.allclose(params, torch.tensor([[1.05, 0.15], [1.05, 0.15]]))
    assert state.accumulated.abs().sum() == 0


def test_zero_weights_always_send():
    gaia = create_algorithm("gaia", t0=0.3)
    params = torch.tensor([[0.5, 10.0], [0.5, 10.0]])
    state = gaia.init(params)
    # partition 0's update [-0.5, -1e-4] leaves its first weight exactly 0: sent however small
    # the threshold; the second (1e-5 relative) stays held back
    gaia.apply(state, params, torch.tensor([[1.0, 2e-4], [0.0, 0.0]]), ctx(), LocalComm(2))
    assert params[0, 0] == 0.0
    assert torch.allclose(params[1], torch.tensor([0.0, 10.0]))
    assert state.accumulated[0].tolist() == pytest.approx([0.0, -1e-4])


def test_accumulates_until_significant():
    gaia = create_algorithm("gaia", t0=0.2)
    params = torch.tensor([[1.0], [1.0]])
    state = gaia.init(params)
    grads = torch.tensor([[-0.2], [0.0]])   # +0.1 a step on partition 0
    for _ in range(2):
        gaia.apply(state, params, grads, ctx(), LocalComm(2))
    assert params[1].item() == pytest.approx(1.0)   # 0.2 / 1.2 < 0.2: still held back
    gaia.apply(state, params, grads, ctx(), LocalComm(2))
    assert params[1].item() == pytest.approx(1.3)   # 0.3 / 1.3 > 0.2: sent at once
    assert state.accumulated.abs().sum() == 0


def test_t0_zero_equals_bsp():
    p_gaia, p_bsp, stats = run_beside_bsp(create_algorithm("gaia", t0=0.0), seed=1, n=3, size=6,
                                          steps=5, lr=0.1, weight_decay=0.01)
    assert torch.allclose(p_gaia, p_bsp, atol=1e-6)
    assert stats.bytes_sent.tolist() == [24.0] * 3   # capped at the dense size, 4 B x 6


def test_knob():
    gaia = create_algorithm("gaia")
    assert gaia.knob == pytest.approx(0.2)
    gaia.set_knob(0.05)
    assert gaia.t0 == pytest.approx(0.05)
    with pytest.raises(ValueError, match="t0 must be >= 0"):
        gaia.set_knob(-1)
