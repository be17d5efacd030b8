"""FedOpt: the server's SGD step on the pseudo-gradient x - mean(w) by hand (heavy ball and
Nesterov); server_lr 1 and server_momentum 0 is FedAvg bit for bit; DiLoCo is a configuration."""

import pytest
import torch

from tests.training.algorithm_helpers import trained_params
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0):
    return StepContext(iteration=iteration, lr=1.0, lr_factor=1.0, num_partitions=2,
                       momentum=0.0, weight_decay=0.0)


def server_trajectory(**params):
    """The global model after each of 3 rounds of one local step (gradients 1 and 3 at local lr
    1/2: the partitions' mean is x - 1, so every pseudo-gradient is 1)."""
    fedopt = create_algorithm("fedopt", iter_local=1, **params)
    model = torch.zeros(2, 1)
    state = fedopt.init(model)
    out = []
    for it in range(3):
        stats = fedopt.apply(state, model, torch.tensor([[1.0], [3.0]]), ctx(it), LocalComm(2))
        assert torch.equal(model[0], model[1]) and stats.synced
        out.append(model[0, 0].item())
    assert stats.bytes_sent.tolist() == [4.0, 4.0]      # FedAvg's message: one dense model
    return out


def test_heavy_ball_server_step_by_hand():
    # v = 1, 1.5, 1.75; x = -0.5 v summed: -0.5, -1.25, -2.125
    assert server_trajectory(server_lr=0.5, server_momentum=0.5, nesterov=False) == [
        -0.5, -1.25, -2.125]


def test_nesterov_server_step_by_hand():
    # v = 1, 1.5, 1.75; step 0.5 * (1 + 0.5 v): 0.75, 0.875, 0.9375
    assert server_trajectory(server_lr=0.5, server_momentum=0.5, nesterov=True) == [
        -0.75, -1.625, -2.5625]


def test_plain_server_step_scales_the_mean_change():
    assert server_trajectory(server_lr=2.0, server_momentum=0.0) == [-2.0, -4.0, -6.0]


def test_server_lr_one_without_momentum_is_fedavg_bit_for_bit():
    fedavg = trained_params(create_algorithm("fedavg", iter_local=2))
    fedopt = trained_params(create_algorithm("fedopt", iter_local=2, server_lr=1.0,
                                             server_momentum=0.0))
    assert torch.equal(fedopt, fedavg)
    diloco = trained_params(create_algorithm("fedopt", iter_local=2))   # the defaults
    assert (create_algorithm("fedopt").server_lr, create_algorithm("fedopt").nesterov) == (
        0.7, True)
    assert not torch.allclose(diloco, fedavg, atol=1e-6)
    assert torch.isfinite(diloco).all()


def test_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="server_lr must be > 0"):
        create_algorithm("fedopt", server_lr=0.0)
    with pytest.raises(ValueError, match=r"server_momentum must be in \[0, 1\)"):
        create_algorithm("fedopt", server_momentum=1.0)
    with pytest.raises(ValueError, match="nesterov must be true or false, got 'true'"):
        create_algorithm("fedopt", nesterov="true")
    fedopt = create_algorithm("fedopt", iter_local=10)
    fedopt.set_knob(5)
    assert fedopt.iter_local == 5 and fedopt.KNOB is create_algorithm("fedavg").KNOB
