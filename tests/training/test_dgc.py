"""DGC: the sparsity warm-up, momentum correction and factor masking by hand, clipping."""

import pytest
import torch

from tests.training.algorithm_helpers import replicas_after
from training.algorithms import StepContext, create_algorithm, list_algorithms
from training.comm import LocalComm


def ctx(iteration=0, lr=1.0, momentum=0.5, weight_decay=0.0, n=2):
    return StepContext(iteration=iteration, lr=lr, lr_factor=1.0, num_partitions=n,
                       momentum=momentum, weight_decay=weight_decay)


def test_sparsity_schedule():
    dgc = create_algorithm("dgc", sparsity=0.999, warmup_epoch_iterations=1000)
    at = [dgc.sparsity_at(i) for i in (0, 999, 1000, 2000, 3000, 3999, 4000, 60_000)]
    assert at == [0.75, 0.75, 0.9375, 0.984375, 0.996, 0.996, 0.999, 0.999]
    dgc.set_knob(0.9)   # a knob below a warm-up stage wins
    assert [dgc.sparsity_at(i) for i in (0, 1000, 4000)] == [0.75, 0.9, 0.9]
    assert create_algorithm("dgc", warmup_epoch_iterations=0).sparsity_at(0) == 0.999


def test_momentum_correction_and_factor_masking_by_hand():
    dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0)   # top-1 of 4
    params = torch.zeros(2, 4)
    state = dgc.init(params)
    grads = torch.tensor([[4.0, -3.0, 1.0, 0.5], [0.1, 0.2, 0.0, 2.0]])
    stats = dgc.apply(state, params, grads, ctx(), LocalComm(2))
    assert torch.allclose(params, torch.tensor([[-2.0, 0.0, 0.0, -1.0]] * 2))
    assert torch.allclose(state.accumulated, torch.tensor([[0, -3, 1, .5], [.1, .2, 0, 0]]))
    assert torch.allclose(state.momentum, state.accumulated)
    assert stats.bytes_sent.tolist() == [8.0, 8.0] and stats.bytes_received.tolist() == [8.0, 8.0]
    dgc.apply(state, params, grads, ctx(1), LocalComm(2))
    # u1 = .5 u1 + g1 = [4, -4.5, 1.5, .75]; v1 += u1 = [4, -7.5, 2.5, 1.25]: sends -7.5
    # u2 = [.15, .3, 0, 2]; v2 = [.25, .5, 0, 2]: sends 2
    assert torch.allclose(params, torch.tensor([[-2.0, 3.75, 0.0, -2.0]] * 2))
    assert torch.allclose(state.accumulated, torch.tensor([[4, 0, 2.5, 1.25], [.25, .5, 0, 0]]))
    assert torch.allclose(state.momentum, torch.tensor([[4, 0, 1.5, .75], [.15, .3, 0, 0]]))


def test_local_view_adds_each_partitions_unsent_residual_and_travels_as_it_is():
    dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0)
    params = torch.zeros(2, 4)
    state = dgc.init(params)
    dgc.apply(state, params, torch.tensor([[4.0, -3.0, 1.0, 0.5], [0.1, 0.2, 0.0, 2.0]]),
              ctx(lr=0.5), LocalComm(2))
    view = dgc.local_view(state, params, ctx(lr=0.05))   # whatever the lr now: v is lr-scaled
    # w - v_k / N, with v = lr * (the test above's residual) = 0.5 * ... and N = 2
    assert torch.allclose(view, params - 0.25 * torch.tensor([[0, -3, 1, .5], [.1, .2, 0, 0]]))
    assert not torch.equal(view[0], view[1]) and torch.equal(params[0], params[1])
    visitor = view[0]
    dgc.visitor_view = "as_traveled"
    assert dgc.traveled_view(state, 1, visitor, ctx()) is visitor   # judged as it traveled


def test_a_visitor_is_judged_with_the_hosts_unsent_residual_applied_too():
    dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0)
    assert dgc.visitor_view == "shared"
    params = torch.zeros(2, 4)
    state = dgc.init(params)
    dgc.apply(state, params, torch.tensor([[4.0, -3.0, 1.0, 0.5], [0.1, 0.2, 0.0, 2.0]]),
              ctx(lr=0.5), LocalComm(2))
    visitor = dgc.local_view(state, params, ctx())[0]     # partition 0's model travels to 1
    judged = dgc.traveled_view(state, 1, visitor, ctx(lr=0.05))
    # w - (v_0 + v_1) / N: both residuals applied, as once both partitions have sent them
    both = 0.5 * torch.tensor([[0, -3, 1, .5], [.1, .2, 0, 0]]).sum(dim=0) / 2
    assert torch.allclose(judged, params[0] - both)
    raw = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0, residual="raw")
    state = raw.init(torch.zeros(2, 4))
    state.accumulated.fill_(1.0)    # a raw residual is applied at the current lr: lr/N x v_k
    judged = raw.traveled_view(state, 1, torch.zeros(4), ctx(lr=0.2))
    assert torch.allclose(judged, torch.full((4,), -0.1))
    with pytest.raises(ValueError, match="visitor_view must be one of"):
        create_algorithm("dgc", visitor_view="merged")


def test_the_residual_held_across_a_decay_keeps_the_lr_it_was_accumulated_at():
    def run(residual):
        dgc = create_algorithm("dgc", sparsity=0.5, warmup_epoch_iterations=0, residual=residual)
        params = torch.zeros(2, 2)
        state = dgc.init(params)
        # lr 1: each partition sends its larger element and holds the other (1.0)
        dgc.apply(state, params, torch.tensor([[4.0, 1.0], [4.0, 1.0]]), ctx(lr=1.0, momentum=0),
                  LocalComm(2))
        held = dgc.local_view(state, params, ctx(lr=0.1))[0] - params[0]
        dgc.set_knob(0.0)   # after a x0.1 decay, no new gradient: everything held goes out
        dgc.apply(state, params, torch.zeros(2, 2), ctx(lr=0.1, momentum=0), LocalComm(2))
        return params[0], held

    params, held = run("lr_scaled")      # the authors': the held 1.0 at lr 1 moves w by 1.0
    assert torch.allclose(params, torch.tensor([-4.0, -1.0]))
    assert torch.allclose(held, torch.tensor([0.0, -0.5]))   # local view = w - v_k / N
    params, held = run("raw")            # applied at the decayed lr: shrunk tenfold
    assert torch.allclose(params, torch.tensor([-4.0, -0.1]))
    assert torch.allclose(held, torch.tensor([0.0, -0.05]))
    with pytest.raises(ValueError, match="residual must be one of"):
        create_algorithm("dgc", residual="scaled")


def test_per_layer_top_k_keeps_each_layers_share():
    # layers of 4 and 2 values, sparsity 0.75: whole-model top-2 of 6 takes both from layer 1;
    # per layer, top-1 of 4 and top-1 of 2 (at least one value each)
    grads = torch.tensor([[4.0, -3.0, 1.0, 0.5, 0.2, -0.1]])
    sent = {}
    for per_layer in (False, True):
        dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0,
                               per_layer=per_layer)
        dgc.bind_layers([4, 2])
        params = torch.zeros(1, 6)
        stats = dgc.apply(dgc.init(params), params, grads, ctx(n=1), LocalComm(1))
        sent[per_layer] = (params.nonzero()[:, 1].tolist(), stats.bytes_sent.tolist())
    assert sent[False] == ([0, 1], [16.0])   # 2 values x (4 B value + 4 B index)
    assert sent[True] == ([0, 4], [16.0])
    unbound = create_algorithm("dgc", per_layer=True)
    with pytest.raises(ValueError, match="bind_layers"):
        unbound.apply(unbound.init(torch.zeros(1, 6)), torch.zeros(1, 6), grads, ctx(n=1),
                      LocalComm(1))


def test_the_trainer_tells_dgc_its_layers():
    from torch import nn

    from training.engine import PartitionData, TrainConfig, Trainer

    data = PartitionData(torch.randn(8, 3), torch.tensor([0, 1] * 4))
    dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0, per_layer=True)
    trainer = Trainer(lambda: nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)), dgc,
                      [data, data], data, TrainConfig(iterations=1, batch_size=4,
                                                      eval_every=1, progress=False))
    assert dgc.layers == (12, 4, 8, 2)
    # a quarter of each layer: 3 + 1 + 2 + 1 (at least one) values, 8 B each; whole-model
    # top-k would send round(26 / 4) = 6
    trainer.step()
    assert trainer.bytes_sent.tolist() == [7 * 8.0, 7 * 8.0]


def test_dense_dgc_masks_all_momentum_away():
    dgc = create_algorithm("dgc", sparsity=0.0, warmup_epoch_iterations=0)
    params = torch.zeros(2, 3)
    state = dgc.init(params)
    grads = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    for it in range(3):
        stats = dgc.apply(state, params, grads, ctx(it, momentum=0.9), LocalComm(2))
    assert torch.allclose(params, torch.full((2, 3), -6.0))   # plain SGD: 3 x mean grad 2
    assert stats.bytes_sent.tolist() == [12.0, 12.0]          # capped at dense 4 B x 3


def test_replicas_stay_identical():
    params = replicas_after(create_algorithm("dgc", sparsity=0.9, warmup_epoch_iterations=2), 10)
    assert torch.equal(params, params[:1].expand(5, 50))


def test_clipping_bounds_each_partition_gradient():
    dgc = create_algorithm("dgc", sparsity=0.0, warmup_epoch_iterations=0, clip_norm=2.0)
    params = torch.zeros(4, 2)
    state = dgc.init(params)
    grads = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0], [0.0, 0.0]])
    dgc.apply(state, params, grads, ctx(n=4), LocalComm(4))
    # limit 2 / sqrt(4) = 1: [3, 4] -> [.6, .8]; [.3, .4] is kept; applied lr / N = 1/4
    assert torch.allclose(params[0], -torch.tensor([0.9, 1.2]) / 4)


def test_validation():
    with pytest.raises(ValueError, match="sparsity must be in"):
        create_algorithm("dgc", sparsity=1.0)
    with pytest.raises(ValueError, match="per_layer must be true or false, got 'false'"):
        create_algorithm("dgc", per_layer="false")      # a config string, not a bool
    with pytest.raises(ValueError, match="known: " + ", ".join(list_algorithms())):
        create_algorithm("ssgd")
