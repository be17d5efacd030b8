"""BSP: the hand-computed step, and equality with single-model SGD on the combined batch."""

import pytest
import torch
from torch import nn

from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0, lr=0.1, momentum=0.9, weight_decay=0.0, n=2):
    return StepContext(iteration=iteration, lr=lr, lr_factor=1.0, num_partitions=n,
                       momentum=momentum, weight_decay=weight_decay)


def test_two_parameter_steps_by_hand():
    bsp = create_algorithm("bsp")
    params = torch.tensor([[1.0, 2.0], [1.0, 2.0]])
    state = bsp.init(params)
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    stats = bsp.apply(state, params, grads, ctx(), LocalComm(2))
    assert torch.allclose(params, torch.tensor([[0.95, 1.95]] * 2))
    bsp.apply(state, params, grads, ctx(1), LocalComm(2))
    # velocity 0.9 * 0.5 + 0.5 = 0.95 per element
    assert torch.allclose(params, torch.tensor([[0.855, 1.855]] * 2))
    assert stats.synced
    assert stats.bytes_sent.tolist() == [8.0, 8.0]
    assert stats.bytes_received.tolist() == [8.0, 8.0]


def test_weight_decay_is_added_to_the_gradient():
    bsp = create_algorithm("bsp")
    params = torch.tensor([[2.0], [2.0]])
    bsp.apply(bsp.init(params), params, torch.zeros(2, 1), ctx(weight_decay=0.5, lr=1.0),
              LocalComm(2))
    assert torch.allclose(params, torch.tensor([[1.0], [1.0]]))


def test_equals_single_model_sgd_on_the_combined_batch():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    reference = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    reference.load_state_dict(model.state_dict())
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    params = flat.repeat(3, 1)
    bsp = create_algorithm("bsp")
    state = bsp.init(params)
    for it in range(4):
        xs, ys = torch.randn(3, 5, 3), torch.randint(0, 2, (3, 5))
        grads = []
        for k in range(3):
            torch.nn.utils.vector_to_parameters(params[k], model.parameters())
            model.zero_grad()
            nn.functional.cross_entropy(model(xs[k]), ys[k]).backward()
            grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        bsp.apply(state, params, torch.stack(grads), ctx(it, 0.1, 0.9, 0.01, 3), LocalComm(3))
        optimizer.zero_grad()
        nn.functional.cross_entropy(reference(xs.reshape(15, 3)), ys.reshape(15)).backward()
        optimizer.step()
    expected = torch.nn.utils.parameters_to_vector(reference.parameters()).detach()
    for k in range(3):
        assert torch.allclose(params[k], expected, atol=1e-6)


def test_has_no_knob():
    bsp = create_algorithm("bsp")
    assert bsp.knob is None
    with pytest.raises(ValueError, match="no communication knob"):
        bsp.set_knob(1.0)
