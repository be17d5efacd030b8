"""FedProx: the proximal term pulls each local step towards the round's global model (by hand);
mu = 0 is FedAvg bit for bit; the cycle, knob and checks are FedAvg's."""

import pytest
import torch

from tests.training.algorithm_helpers import trained_params
from training.algorithms import StepContext, create_algorithm
from training.comm import LocalComm


def ctx(iteration=0):
    return StepContext(iteration=iteration, lr=1.0, lr_factor=1.0, num_partitions=2,
                       momentum=0.0, weight_decay=0.0)


def test_the_proximal_term_by_hand():
    fedprox = create_algorithm("fedprox", mu=1.0, iter_local=2)
    params = torch.zeros(2, 1)
    state = fedprox.init(params)
    grads = torch.tensor([[1.0], [3.0]])
    seen = []
    for it in range(4):
        stats = fedprox.apply(state, params, grads, ctx(it), LocalComm(2))
        seen.append((params[:, 0].tolist(), stats.bytes_sent.tolist()))
    # local lr 1/2; step 0 at the anchor: -0.5, -1.5; step 1 adds mu * (w - 0): gradients
    # 0.5 and 1.5, so -0.75 and -2.25, averaged to -1.5 (FedAvg: -1 and -3 -> -2)
    assert seen[0] == ([-0.5, -1.5], [0.0, 0.0])
    assert seen[1] == ([-1.5, -1.5], [4.0, 4.0])
    # the anchor moved to -1.5: step 2 has no pull (-2, -3), step 3 pulls back by 0.5 and 1.5
    assert seen[2][0] == [-2.0, -3.0]
    assert seen[3][0] == [-3.0, -3.0] and state.anchor[:, 0].tolist() == [-3.0, -3.0]


def test_mu_zero_is_fedavg_bit_for_bit():
    fedavg = trained_params(create_algorithm("fedavg", iter_local=2))
    fedprox = trained_params(create_algorithm("fedprox", mu=0.0, iter_local=2))
    assert torch.equal(fedprox, fedavg)
    pulled = trained_params(create_algorithm("fedprox", mu=0.5, iter_local=2))
    assert not torch.allclose(pulled, fedavg, atol=1e-6)


def test_fedavgs_cycle_knob_and_schedule_check_carry_over():
    fedprox = create_algorithm("fedprox", mu=0.1, iter_local=5)
    assert fedprox.KNOB is create_algorithm("fedavg").KNOB and fedprox.has_global_model
    fedprox.set_knob(2)
    assert fedprox.iter_local == 2 and fedprox.mu == 0.1
    (problem,) = create_algorithm("fedprox", iter_local=7).schedule_problems(300, [range(300)])
    assert "iter_local=7 does not divide 300 iterations" in problem


def test_validation_says_how_to_fix():
    with pytest.raises(ValueError, match=r"mu must be >= 0 .*got -0.1"):
        create_algorithm("fedprox", mu=-0.1)
    with pytest.raises(ValueError, match="iter_local must be >= 1"):
        create_algorithm("fedprox", mu=0.1, iter_local=0)


def test_a_negative_mu_is_a_one_line_error_when_a_study_loads():
    from training.study.config import study_from_dict

    with pytest.raises(ValueError, match=r"^mu must be >= 0 [^\n]*$"):
        study_from_dict({"num_partitions": 2, "dataset": {"name": "digits", "image_size": 8},
                         "train": {"iterations": 10}, "algorithms": {"fedprox": {"mu": -1}},
                         "experiments": [{"name": "n", "kind": "noniid", "models": ["gn-lenet"],
                                          "algorithms": ["fedprox"],
                                          "noniid_fractions": [0.0, 1.0]}]})
