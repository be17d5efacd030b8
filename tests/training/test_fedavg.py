"""FedAvg averages every IterLocal steps, keeps local momentum, steps locally with lr/N (the
authors') or lr, and IterLocal=1 equals BSP at that lr."""

import pytest
import torch

from tests.training.algorithm_helpers import run_beside_bsp
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm, WeightedComm


def ctx(iteration=0, lr=1.0, momentum=0.0, weight_decay=0.0, n=2):
    return StepContext(iteration=iteration, lr=lr, lr_factor=1.0, num_partitions=n,
                       momentum=momentum, weight_decay=weight_decay)


def two_partitions(iter_local: int):
    """FedAvg over 2 partitions of 2 zero parameters; each partition's gradient a unit vector."""
    fedavg = create_algorithm("fedavg", iter_local=iter_local)
    params = torch.zeros(2, 2)
    return fedavg, params, fedavg.init(params), torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_averages_every_iter_local_steps():
    fedavg, params, state, grads = two_partitions(iter_local=3)
    sent = []
    for it in range(3):
        stats = fedavg.apply(state, params, grads, ctx(it), LocalComm(2))
        sent.append(stats.bytes_sent.tolist())
        if it == 1:   # local steps of lr / N = 0.5
            assert torch.equal(params, torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    assert torch.equal(params, torch.tensor([[-0.75, -0.75], [-0.75, -0.75]]))
    assert sent == [[0.0, 0.0], [0.0, 0.0], [8.0, 8.0]]
    assert stats.synced and stats.bytes_received.tolist() == [8.0, 8.0]


def test_views_just_agreed_only_right_after_an_averaging_that_lets_them_drift_again():
    fedavg, params, state, grads = two_partitions(iter_local=2)
    agreed = []
    for it in range(4):
        fedavg.apply(state, params, grads, ctx(it), LocalComm(2))
        agreed.append(fedavg.views_just_agreed(state))
    assert agreed == [False, True, False, True]
    fedavg.set_knob(1)    # IterLocal 1 is BSP: the models always agree, and that is the truth
    assert not fedavg.views_just_agreed(state)
    assert not create_algorithm("gaia").views_just_agreed(None)


def test_momentum_stays_local():
    fedavg = create_algorithm("fedavg", iter_local=1)
    params = torch.zeros(2, 1)
    state = fedavg.init(params)
    fedavg.apply(state, params, torch.tensor([[1.0], [3.0]]), ctx(momentum=0.9), LocalComm(2))
    assert state.momentum.tolist() == [[1.0], [3.0]]
    assert params.tolist() == [[-1.0], [-1.0]]     # mean of -0.5 * 1 and -0.5 * 3


def test_global_local_lr_steps_with_the_global_lr():
    fedavg = create_algorithm("fedavg", iter_local=1, local_lr="global")
    params = torch.zeros(2, 1)
    fedavg.apply(fedavg.init(params), params, torch.tensor([[1.0], [3.0]]), ctx(), LocalComm(2))
    assert params.tolist() == [[-2.0], [-2.0]]
    with pytest.raises(ValueError, match="local_lr must be one of"):
        create_algorithm("fedavg", local_lr="local")


def test_iter_local_one_equals_bsp_in_global_mode_only():
    p_fed, p_bsp, _ = run_beside_bsp(create_algorithm("fedavg", iter_local=1, local_lr="global"),
                                     seed=2, n=4, size=5, steps=6, lr=0.05, weight_decay=5e-4)
    assert torch.allclose(p_fed, p_bsp, atol=1e-6)
    p_fed, p_bsp, _ = run_beside_bsp(create_algorithm("fedavg", iter_local=1), seed=2, n=4,
                                     size=5, steps=6, lr=0.05, weight_decay=5e-4)
    assert not torch.allclose(p_fed, p_bsp, atol=1e-3)


def test_per_partition_iter_local_one_is_bsp_at_lr_over_n():
    p_fed, _, _ = run_beside_bsp(create_algorithm("fedavg", iter_local=1), seed=2, n=4,
                                 size=5, steps=6, lr=0.2, weight_decay=5e-4)
    _, p_bsp, _ = run_beside_bsp(create_algorithm("fedavg", iter_local=1), seed=2, n=4,
                                 size=5, steps=6, lr=0.05, weight_decay=5e-4)
    assert torch.allclose(p_fed, p_bsp, atol=1e-6)


def test_knob_change_mid_run_counts_steps_since_the_last_average():
    fedavg = create_algorithm("fedavg", iter_local=5)
    params = torch.zeros(2, 1)
    state = fedavg.init(params)
    grads = torch.tensor([[1.0], [0.0]])
    for it in range(3):
        assert not fedavg.apply(state, params, grads, ctx(it), LocalComm(2)).synced
    fedavg.set_knob(2)
    assert fedavg.iter_local == 2 and isinstance(fedavg.iter_local, int)
    assert fedavg.apply(state, params, grads, ctx(3), LocalComm(2)).synced
    with pytest.raises(ValueError, match="iter_local must be >= 1"):
        fedavg.set_knob(0)


def test_a_round_starts_with_fresh_momentum():
    fedavg = create_algorithm("fedavg", iter_local=2)
    params = torch.zeros(2, 1)
    state = fedavg.init(params)
    assert fedavg.supports_participation and fedavg.round_ended(state)
    fedavg.apply(state, params, torch.ones(2, 1), ctx(momentum=0.9), LocalComm(2))
    assert not fedavg.round_ended(state)
    fedavg.apply(state, params, torch.ones(2, 1), ctx(1, momentum=0.9), LocalComm(2))
    assert fedavg.round_ended(state) and state.momentum.abs().sum() > 0
    fedavg.begin_round(state, [3, 7])
    assert state.momentum.abs().sum() == 0


def test_sitting_out_counts_the_step_and_adopts_the_participants_average():
    fedavg = create_algorithm("fedavg", iter_local=2)
    params = torch.tensor([[1.0], [5.0]])
    state = fedavg.init(params)
    comm = WeightedComm(LocalComm(2), torch.tensor([0.0, 1.0]), 1)   # row 0 sits out
    first = fedavg.sit_out(state, params, ctx(), comm)
    assert params.tolist() == [[1.0], [5.0]] and not first.synced
    second = fedavg.sit_out(state, params, ctx(1), comm)
    assert params.tolist() == [[5.0], [5.0]] and second.synced and fedavg.round_ended(state)
    assert second.bytes_sent.tolist() == [0.0, 0.0]     # a sampled-out partition sends nothing


@pytest.mark.parametrize("name", ["bsp", "gaia", "dgc"])
def test_other_algorithms_do_not_claim_participation(name):
    algorithm = create_algorithm(name)
    assert not algorithm.supports_participation
    with pytest.raises(NotImplementedError, match="does not support partial participation"):
        algorithm.round_ended(None)


def test_visitor_view_average_keeps_the_models_before_each_averaging_and_trains_the_same():
    fedavg, params, state, grads = two_partitions(iter_local=2)
    kept = create_algorithm("fedavg", iter_local=2, visitor_view="average")
    kept_params = torch.zeros(2, 2)
    kept_state = kept.init(kept_params)
    assert kept.scores_averaging() and not fedavg.scores_averaging()
    seen = []
    for it in range(2):
        fedavg.apply(state, params, grads, ctx(it), LocalComm(2))
        kept.apply(kept_state, kept_params, grads, ctx(it), LocalComm(2))
        seen.append(kept.before_average(kept_state))
    assert seen[0] is None                       # no averaging at the first step
    # two local steps of lr / N = 0.5 each, then the mean [-0.5, -0.5]
    assert torch.equal(seen[1], torch.tensor([[-1.0, 0.0], [0.0, -1.0]]))
    assert torch.equal(kept_params, params) and torch.equal(params, torch.full((2, 2), -0.5))
    assert fedavg.before_average(state) is None  # the default keeps nothing
    kept.apply(kept_state, kept_params, grads, ctx(2), LocalComm(2))
    assert kept.before_average(kept_state) is None   # mid-cycle: no averaging this iteration
    with pytest.raises(ValueError, match="visitor_view must be one of"):
        create_algorithm("fedavg", visitor_view="pairwise")
