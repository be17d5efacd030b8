"""Error-feedback top-k: the error memory and the momentum on the applied sum by hand (no
momentum correction, no masking: it differs from DGC), sparsity 0 is BSP, DGC's knob and checks."""

import pytest
import torch

from tests.training.algorithm_helpers import replicas_after, run_beside_bsp
from training.algorithms import DGC, StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0, lr=1.0, momentum=0.5, n=2):
    return StepContext(iteration=iteration, lr=lr, lr_factor=1.0, num_partitions=n,
                       momentum=momentum, weight_decay=0.0)


def test_error_feedback_by_hand():
    ef = create_algorithm("ef_topk", sparsity=0.75)           # top-1 of 4, no warm-up
    params = torch.zeros(2, 4)
    state = ef.init(params)
    grads = torch.tensor([[4.0, -3.0, 1.0, 0.5], [0.1, 0.2, 0.0, 2.0]])
    stats = ef.apply(state, params, grads, ctx(), LocalComm(2))
    # e1 sends 4, e2 sends 2: applied (4 + 2) / 2 per value; u = applied
    assert torch.allclose(params, torch.tensor([[-2.0, 0.0, 0.0, -1.0]] * 2))
    assert torch.allclose(state.accumulated, torch.tensor([[0, -3, 1, .5], [.1, .2, 0, 0]]))
    assert stats.bytes_sent.tolist() == [8.0, 8.0] and stats.bytes_received.tolist() == [8.0, 8.0]
    ef.apply(state, params, grads, ctx(1), LocalComm(2))
    # e1 = [4, -6, 2, 1] sends -6; e2 = [.2, .4, 0, 2] sends 2: applied [0, -3, 0, 1];
    # u = 0.5 [2, 0, 0, 1] + [0, -3, 0, 1] = [1, -3, 0, 1.5]
    assert torch.allclose(params, torch.tensor([[-3.0, 3.0, 0.0, -2.5]] * 2))
    assert torch.allclose(state.accumulated, torch.tensor([[4, 0, 2, 1], [.2, .4, 0, 0]]))
    # DGC on the same input corrects the momentum locally and masks it: another model
    dgc = create_algorithm("dgc", sparsity=0.75, warmup_epoch_iterations=0)
    p_dgc = torch.zeros(2, 4)
    s_dgc = dgc.init(p_dgc)
    for it in range(2):
        dgc.apply(s_dgc, p_dgc, grads, ctx(it), LocalComm(2))
    assert not torch.allclose(p_dgc, params)


def test_the_error_is_lr_scaled():
    ef = create_algorithm("ef_topk", sparsity=0.5)
    params = torch.zeros(1, 2)
    state = ef.init(params)
    ef.apply(state, params, torch.tensor([[4.0, 1.0]]), ctx(lr=0.5, momentum=0.0, n=1),
             LocalComm(1))
    assert params.tolist() == [[-2.0, 0.0]] and state.accumulated.tolist() == [[0.0, 0.5]]
    assert torch.equal(ef.local_view(state, params, ctx(n=1)), torch.tensor([[-2.0, -0.5]]))


def test_dense_ef_topk_is_bsp():
    p_ef, p_bsp, stats = run_beside_bsp(create_algorithm("ef_topk", sparsity=0.0), seed=4, n=3,
                                        size=6, steps=5, lr=0.1, weight_decay=5e-4)
    assert torch.allclose(p_ef, p_bsp, atol=1e-6)
    assert stats.bytes_sent.tolist() == [24.0] * 3          # capped at dense 4 B x 6


def test_replicas_stay_identical():
    params = replicas_after(create_algorithm("ef_topk", sparsity=0.9), 6)
    assert torch.equal(params, params[:1].expand(5, 50))


def test_dgcs_knob_grid_and_schedule_check():
    ef = create_algorithm("ef_topk")
    assert ef.KNOB is DGC.KNOB and ef.sparsity == 0.999 and ef.warmup_epoch_iterations == 0
    ef.set_knob(0.99)
    assert ef.sparsity_at(0) == 0.99
    (problem,) = create_algorithm("ef_topk", sparsity=0.999).schedule_problems(
        300, [range(150), range(150, 225), range(225, 300)])
    assert "cannot drain" in problem
    with pytest.raises(ValueError, match="sparsity must be in"):
        create_algorithm("ef_topk", sparsity=1.0)
