"""SCAFFOLD (option II): control variates start at 0 and follow the paper's update by hand, the
correction removes the drift of constant skewed gradients, momentum and per-value step sizes keep
c_i the round's mean direction, and the message is a model and a control variate."""

import pytest
import torch

from tests.training.algorithm_helpers import trained_params
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0, momentum=0.0, lr_mult=None):
    return StepContext(iteration=iteration, lr=1.0, lr_factor=1.0, num_partitions=2,
                       momentum=momentum, weight_decay=0.0, lr_mult=lr_mult)


GRADS = torch.tensor([[1.0], [3.0]])   # constant, skewed: partition 2 drifts three times as far


def test_control_variates_start_at_zero_and_follow_option_ii_by_hand():
    scaffold = create_algorithm("scaffold", iter_local=2)
    params = torch.zeros(2, 1)
    state = scaffold.init(params)
    assert not state.control.any() and not state.local_control.any()
    trace = []
    for it in range(4):
        stats = scaffold.apply(state, params, GRADS, ctx(it), LocalComm(2))
        trace.append(params[:, 0].tolist())
    # round 1 (c = c_i = 0), local lr 1/2: -0.5, -1.5 then -1, -3; K eta_l = 1 so
    # c_i = (x - y_i) / 1 = 1, 3 and c = 2; x = mean = -2
    assert trace[:2] == [[-0.5, -1.5], [-2.0, -2.0]]
    # round 2: corrections c - c_i = 1, -1: both partitions step by 0.5 * 2, no drift
    assert trace[2:] == [[-3.0, -3.0], [-4.0, -4.0]]
    assert state.local_control[:, 0].tolist() == [1.0, 3.0]     # c_i - c + (x - y) = c_i
    assert state.control[:, 0].tolist() == [2.0, 2.0]
    # a model delta and a control-variate delta: 2 x 4 B per parameter
    assert stats.bytes_sent.tolist() == [8.0, 8.0] and stats.synced


def test_global_lr_scales_the_servers_step():
    scaffold = create_algorithm("scaffold", iter_local=2, global_lr=0.5)
    params = torch.zeros(2, 1)
    state = scaffold.init(params)
    for it in range(2):
        scaffold.apply(state, params, GRADS, ctx(it), LocalComm(2))
    assert params[:, 0].tolist() == [-1.0, -1.0]                 # 0 + 0.5 * mean(-1, -3)
    assert state.control[:, 0].tolist() == [2.0, 2.0]            # c is not scaled


def test_with_momentum_c_i_is_the_rounds_mean_momentum_direction():
    scaffold = create_algorithm("scaffold", iter_local=2)
    params = torch.zeros(2, 1)
    state = scaffold.init(params)
    for it in range(2):
        scaffold.apply(state, params, GRADS, ctx(it, momentum=0.5), LocalComm(2))
    # m = 1, 1.5 (partition 1) and 3, 4.5: y = -0.5 - 0.75 and -1.5 - 2.25
    assert state.local_control[:, 0].tolist() == [1.25, 3.75]
    assert params[:, 0].tolist() == [-2.5, -2.5]


def test_per_value_steps_divide_out_of_the_control_variate():
    scaffold = create_algorithm("scaffold", iter_local=2)
    params = torch.zeros(2, 2)
    state = scaffold.init(params)
    grads = torch.tensor([[1.0, 1.0], [3.0, 3.0]])
    mult = torch.tensor([1.0, 2.0])   # the second value steps twice as far
    for it in range(2):
        scaffold.apply(state, params, grads, ctx(it, lr_mult=mult), LocalComm(2))
    assert state.local_control.tolist() == [[1.0, 1.0], [3.0, 3.0]]
    assert params.tolist() == [[-2.0, -4.0], [-2.0, -4.0]]


def test_scaffold_trains_and_differs_from_fedavg_after_the_first_round():
    fedavg = trained_params(create_algorithm("fedavg", iter_local=2))
    scaffold = trained_params(create_algorithm("scaffold", iter_local=2))
    assert torch.isfinite(scaffold).all() and not torch.allclose(scaffold, fedavg, atol=1e-6)
    one_round = trained_params(create_algorithm("scaffold", iter_local=2), iterations=2)
    # round 1 has c = c_i = 0: FedAvg's round (x + mean(y - x) vs mean(y): rounding only)
    assert torch.allclose(one_round, trained_params(create_algorithm("fedavg", iter_local=2),
                                                    iterations=2), rtol=0, atol=1e-12)


def test_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="global_lr must be > 0"):
        create_algorithm("scaffold", global_lr=0.0)
    with pytest.raises(ValueError, match="iter_local must be >= 1"):
        create_algorithm("scaffold", iter_local=0)


def test_under_partial_participation_each_partition_keeps_its_control_variate():
    # N = 3 partitions, 2 rows (slots) per round, local lr = lr = 1, one step per round
    scaffold = create_algorithm("scaffold", iter_local=1, local_lr="global")
    params = torch.zeros(2, 1)
    state = scaffold.init(params)
    step = StepContext(iteration=0, lr=1.0, lr_factor=1.0, num_partitions=3, momentum=0.0,
                       weight_decay=0.0)
    scaffold.begin_round(state, [0, 2])           # gradients 1 (partition 0) and 3 (partition 2)
    scaffold.apply(state, params, torch.tensor([[1.0], [3.0]]), step, LocalComm(2))
    # c_i = 1, 3; c = 0 + (1 + 3) / N; x = mean(-1, -3)
    assert state.kept_controls == {0: torch.tensor([1.0]), 2: torch.tensor([3.0])}
    assert state.control[:, 0].tolist() == pytest.approx([4 / 3] * 2)
    assert params[:, 0].tolist() == [-2.0, -2.0]
    scaffold.begin_round(state, [1, 2])           # partition 1 is new (c_1 = 0), 2 keeps 3
    assert state.local_control[:, 0].tolist() == [0.0, 3.0] and not state.momentum.any()
    scaffold.apply(state, params, torch.tensor([[2.0], [3.0]]), step, LocalComm(2))
    # y = -2 - (2 + 4/3), -2 - (3 - 5/3); c_i+ = c_i - c + (x - y) = 2, 3: each its gradient,
    # and c = 4/3 + (2 + 0) / 3 = 2, the mean of all three
    assert state.local_control[:, 0].tolist() == pytest.approx([2.0, 3.0])
    assert {p: c.item() for p, c in state.kept_controls.items()} == pytest.approx(
        {0: 1.0, 1: 2.0, 2: 3.0})
    assert state.control[:, 0].tolist() == pytest.approx([2.0, 2.0])
    assert params[:, 0].tolist() == pytest.approx([-13 / 3] * 2)
    assert create_algorithm("scaffold").supports_participation
