"""The shared pieces of training/algorithms/base.py: the weight-decayed gradient."""

import pytest
import torch

from training.algorithms import create_algorithm
from training.algorithms.base import StepContext, decayed
from training.comm import LocalComm


def _ctx(weight_decay: float) -> StepContext:
    return StepContext(iteration=0, lr=0.5, lr_factor=1.0, num_partitions=2, momentum=0.0,
                       weight_decay=weight_decay)


def test_decayed_adds_weight_decay_times_params_without_touching_inputs():
    grads = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    params = torch.tensor([[10.0, -10.0], [4.0, 2.0]])
    out = decayed(grads, params, _ctx(0.25))
    assert out.tolist() == [[3.5, -0.5], [1.0, -0.5]]
    assert grads.tolist() == [[1.0, 2.0], [0.0, -1.0]]  # a new tensor, inputs unchanged


@pytest.mark.parametrize("name", ["bsp", "gaia", "fedavg", "dgc"])
def test_every_algorithm_applies_the_weight_decay(name):
    # Zero gradients: the only force is the decay, so every algorithm shrinks the weights.
    params = torch.tensor([[2.0, -4.0], [2.0, -4.0]])
    algorithm = create_algorithm(name)
    algorithm.apply(algorithm.init(params), params, torch.zeros(2, 2), _ctx(0.1), LocalComm(2))
    assert (params.abs() < torch.tensor([[2.0, 4.0], [2.0, 4.0]])).any()
    assert (params.abs() <= torch.tensor([[2.0, 4.0], [2.0, 4.0]])).all()


@pytest.mark.parametrize("name", ["bsp", "fedavg", "gaia", "dgc"])
def test_every_stat_lives_on_the_parameters_device(name):
    # "meta" stands for an accelerator: a stat made on the CPU would not be on it, and the
    # Trainer's counters (on the parameters' device) could not add it (Gaia on CUDA did fail)
    algorithm = create_algorithm(name, **({"iter_local": 1} if name == "fedavg" else {}))
    params = torch.zeros(2, 6, device="meta")
    state = algorithm.init(params)
    ctx = _ctx(0.0)
    stats = algorithm.apply(state, params, torch.zeros(2, 6, device="meta"), ctx, LocalComm(2))
    buffers = torch.zeros(2, 3, device="meta")
    _, buffer_stats = algorithm.share_buffers(state, buffers, buffers.clone(), stats, ctx,
                                              LocalComm(2))
    for step in (stats, buffer_stats, stats + buffer_stats):
        for field in (step.bytes_sent, step.bytes_received, step.wire_bytes_sent):
            assert isinstance(field, torch.Tensor) and field.device == params.device
