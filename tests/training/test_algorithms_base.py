"""The shared pieces of training/algorithms/base.py: the weight-decayed gradient, the registry and
the knob each algorithm declares."""

import pytest
import torch

from training.algorithms import base, create_algorithm, list_algorithms, register_algorithm
from training.algorithms.base import Algorithm, KnobSpec, StepContext, decayed
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


@pytest.mark.parametrize("name", list_algorithms())
def test_every_algorithm_applies_the_weight_decay(name):
    # Zero gradients: the only force is the decay, so every algorithm shrinks the weights.
    params = torch.tensor([[2.0, -4.0], [2.0, -4.0]])
    algorithm = create_algorithm(name)
    algorithm.apply(algorithm.init(params), params, torch.zeros(2, 2), _ctx(0.1), LocalComm(2))
    assert (params.abs() < torch.tensor([[2.0, 4.0], [2.0, 4.0]])).any()
    assert (params.abs() <= torch.tensor([[2.0, 4.0], [2.0, 4.0]])).all()


class Gossip(Algorithm):
    """A made-up algorithm with a knob where larger means MORE communication."""

    name = "gossip"
    KNOB = KnobSpec("fanout", larger_is_less_communication=False, default_grid=(1, 2, 4))

    def __init__(self, fanout: int = 2) -> None:
        self.fanout = fanout

    def init(self, params):
        return None

    def apply(self, state, params, grads, ctx, comm):
        raise NotImplementedError


@pytest.fixture
def gossip(monkeypatch):
    """Gossip registered for one test (the registry is restored after it)."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    return register_algorithm(Gossip)


def test_a_registered_algorithm_with_a_knob_appears_in_every_table(gossip):
    from training.skewscout.controller import (
        DEFAULT_GRIDS,
        KNOBS,
        LARGER_IS_LESS_COMMUNICATION,
        ordered_grid,
    )
    from training.study.config import KNOB_OF, study_from_dict
    from training.study.findings import DECENTRALIZED

    assert KNOBS["gossip"] is Gossip.KNOB and "gossip" in DECENTRALIZED
    assert KNOB_OF["gossip"] == "fanout" and DEFAULT_GRIDS["gossip"] == (1, 2, 4)
    assert LARGER_IS_LESS_COMMUNICATION["fanout"] is False
    assert ordered_grid("fanout", [1, 4, 2]) == (4, 2, 1)     # most communication first
    assert create_algorithm("gossip").knob_name == "fanout"
    study = study_from_dict({
        "num_partitions": 2, "dataset": {"name": "digits", "image_size": 8},
        "train": {"iterations": 2}, "experiments": [
            {"name": "s", "kind": "skewscout", "models": ["gn-lenet"], "algorithms": ["gossip"],
             "noniid_fractions": [1.0]}]})
    assert study.grids["gossip"] == (1, 2, 4)
    runs = study.all_runs()
    assert [r.knob for r in runs if r.algorithm == "gossip"] == [1, 2, 4, None]
    assert runs[-1].skewscout["grid"] == [1, 2, 4]


def test_the_shipped_algorithms_declare_their_knobs():
    from training.skewscout.controller import KNOBS

    shipped = {"gaia": "t0", "fedavg": "iter_local", "dgc": "sparsity", "fedprox": "iter_local",
               "fedopt": "iter_local", "scaffold": "iter_local", "ef_topk": "sparsity",
               "fedbn": "iter_local"}
    assert shipped.items() <= {a: k.name for a, k in KNOBS.items()}.items()
    assert create_algorithm("bsp").KNOB is None and create_algorithm("bsp").knob is None


def test_the_registry_refuses_duplicates_and_lists_the_known_names(gossip):
    with pytest.raises(ValueError, match="an algorithm named 'gossip' is already registered"):
        register_algorithm(Gossip)
    known = ", ".join(sorted([*base._REGISTRY]))
    assert "gossip" in known
    with pytest.raises(ValueError, match=f"unknown algorithm 'fedsgd'; known: {known}$"):
        create_algorithm("fedsgd")
    with pytest.raises(ValueError, match="default_grid"):
        KnobSpec("x", True, ())


@pytest.mark.parametrize("name", list_algorithms())
def test_every_stat_lives_on_the_parameters_device(name):
    # "meta" stands for an accelerator: a stat made on the CPU would not be on it, and the
    # Trainer's counters (on the parameters' device) could not add it (Gaia on CUDA did fail)
    algorithm = create_algorithm(name)
    if algorithm.knob_name == "iter_local":   # the averaging family: average at once
        algorithm.set_knob(1)
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
