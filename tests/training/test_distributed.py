"""Engine parity: 2 gloo processes on 127.0.0.1 compute the same run as the 2-partition simulation.

One launch trains BSP, Gaia, FedAvg and DGC in turn (a tiny float64 MLP with BatchNorm, so
FedAvg's buffer averaging is exercised too); the parent then runs the simulation engine on the
same data and compares parameters, BN buffers, accuracies and byte counts.
"""


import pytest
import torch
from torch import nn

from tests.training.distributed_helpers import (
    assert_ranks_match,
    launch_and_gather,
    mlp_bn,
    outcome,
    save_rank,
    skewed_data,
)
from training.algorithms import create_algorithm
from training.distributed import DistributedComm, distributed_trainer
from training.engine import TrainConfig, Trainer

ALGORITHMS = {
    "bsp": {},
    "gaia": {"t0": 0.05},
    "fedavg": {"iter_local": 2},
    "dgc": {"sparsity": 0.9, "warmup_epoch_iterations": 2},
    "dgc/per_layer": {"sparsity": 0.9, "warmup_epoch_iterations": 2, "per_layer": True},
}   # label -> params; the algorithm is the label before "/"
CONFIG = TrainConfig(iterations=6, batch_size=16, lr=0.1, eval_every=3, eval_batch_size=32,
                     seed=3, progress=False)


def _worker(rank: int, out_dir: str) -> None:
    comm = DistributedComm()
    outcomes: dict = {"comm": {"total": comm.all_sum(torch.tensor([[rank + 1.0, 10.0]])),
                               "mean": comm.all_mean(torch.tensor([[rank]], dtype=torch.float64))}}
    try:
        comm.all_sum(torch.zeros(2, 1))
    except ValueError as err:
        outcomes["comm"]["error"] = str(err)
    parts, val = skewed_data()

    def rank_dependent_model() -> nn.Module:
        torch.manual_seed(100 + rank)
        return mlp_bn()

    try:
        distributed_trainer(rank_dependent_model, create_algorithm("bsp"), parts, val, CONFIG)
    except RuntimeError as err:
        outcomes["comm"]["start"] = str(err)
    for name, params in ALGORITHMS.items():
        algorithm = create_algorithm(name.split("/")[0], **params)
        trainer = distributed_trainer(mlp_bn, algorithm, parts, val, CONFIG)
        assert trainer.partition_ids == [rank] and trainer.num_partitions == 2
        outcomes[name] = outcome(trainer, trainer.run(), 0)
    save_rank(outcomes, out_dir, rank)


def test_distributed_engine_matches_simulation(tmp_path):
    ranks = launch_and_gather(_worker, 2, tmp_path)
    parts, val = skewed_data()
    initial = Trainer(mlp_bn, create_algorithm("bsp"), parts, val, CONFIG).stack.params[0]
    for rank in range(2):
        comm = ranks[rank]["comm"]
        assert torch.equal(comm["total"], torch.tensor([[3.0, 20.0]]))
        assert comm["mean"].dtype == torch.float64 and comm["mean"].item() == 0.5
        assert "one partition" in comm["error"]
        assert "different initial models" in comm["start"]
    for name, params in ALGORITHMS.items():
        sim = Trainer(mlp_bn, create_algorithm(name.split("/")[0], **params), parts, val, CONFIG)
        result = sim.run()
        for got, want in assert_ranks_match(ranks, name, sim, result):
            assert [i for i, _ in got["curve"]] == [i for i, _ in want["curve"]] == [3, 6]
            assert [a for _, a in got["curve"]] == pytest.approx([a for _, a in want["curve"]])
            assert got["bytes_sent"] == pytest.approx(want["bytes_sent"]), name
            assert got["bytes_curve"] == want["bytes_curve"] and got["bytes_curve"][-1][1] > 0, name
        assert not torch.allclose(ranks[0][name]["params"], initial), f"{name} did not train"


# grids, most -> least traffic; Gaia's hosts judge visitors with their own pending updates
SCOUTED = {"fedavg": (1, 2, 4), "dgc": (0.5, 0.9, 0.99), "gaia": (0.01, 0.1, 1.0)}
SCOUT_CONFIG = TrainConfig(iterations=12, batch_size=18, lr=0.1, eval_every=6,
                           eval_batch_size=32, seed=5, progress=False)


def _scouted_run(pairing: str, name: str, trainer_of) -> dict:
    from training.skewscout.scout import ControllerConfig, SkewScout, SkewScoutConfig

    scout = SkewScout(SCOUTED[name], SkewScoutConfig(
        ControllerConfig(target=0.05, patience=1), travel_interval=2, sample_size=8,
        pairing=pairing, travel_dtype="float16", seed=0))
    params = {"warmup_epoch_iterations": 0} if name == "dgc" else {}
    algorithm = create_algorithm(name, **params, **{KNOB[name]: scout.initial_knob})
    trainer = trainer_of(algorithm, [scout])
    result = trainer.run()
    return {"trace": scout.knob_trace, "params": trainer.stack.params.clone(),
            "travels": [(r.iteration, r.pairs, r.local_acc, r.traveled_acc, r.bytes_total)
                        for r in scout.travels],
            "bytes_sent": result.bytes_sent, "bytes_curve": result.bytes_curve}


KNOB = {"fedavg": "iter_local", "dgc": "sparsity", "gaia": "t0"}


def _scout_worker(rank: int, out_dir: str) -> None:
    parts, val = skewed_data(k=3, train=90, seed=1)
    out = {(pairing, name): _scouted_run(pairing, name, lambda a, cb: distributed_trainer(
        mlp_bn, a, parts, val, SCOUT_CONFIG, callbacks=cb))
        for pairing in ("single", "all_pairs") for name in SCOUTED}
    save_rank(out, out_dir, rank)


def test_skewscout_under_torch_distributed_matches_the_simulation(tmp_path):
    # 3 processes: with "single" pairing one process sits each round out; models travel point
    # to point in float16 and every process takes the same decisions as the simulation
    ranks = launch_and_gather(_scout_worker, 3, tmp_path)
    parts, val = skewed_data(k=3, train=90, seed=1)
    for (pairing, name), got in ranks[0].items():
        want = _scouted_run(pairing, name, lambda a, cb: Trainer(mlp_bn, a, parts, val,
                                                                 SCOUT_CONFIG, callbacks=cb))
        assert len(want["travels"]) >= 3 and len(want["trace"]) >= 3, (pairing, name)
        for rank in range(3):
            got = ranks[rank][pairing, name]
            assert got["travels"] == want["travels"] and got["trace"] == want["trace"]
            assert got["bytes_sent"] == want["bytes_sent"]
            assert got["bytes_curve"] == want["bytes_curve"]
            torch.testing.assert_close(got["params"][0], want["params"][rank], rtol=1e-9,
                                       atol=1e-12)


def test_comm_needs_an_initialised_group():
    with pytest.raises(RuntimeError, match="init_distributed"):
        DistributedComm()


@pytest.mark.parametrize("name", ["gn-timm:resnet18", "gn-lenet"])
def test_both_engines_build_models_with_the_study_builder(name):
    # The study takes bn-/gn- before timm:/torchvision: names; run_spec_distributed builds with
    # the same build_model as the simulation, so they work under torchrun too.
    from training.study.run import build_model

    x = torch.zeros(4, 1, 16, 16)
    model = build_model(name, 3, 1, 16)
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert model(x).shape == (4, 3)


def test_a_rank_gets_exactly_its_partition_of_the_simulations_data():
    from training.study.config import RunSpec
    from training.study.run import run_data

    spec = RunSpec({"name": "digits", "image_size": 8}, "gn-lenet", "bsp", {}, 0.6, 3,
                   "label_skew", 4, {"iterations": 2}, "distributed")
    everything, val, shape = run_data(spec)
    for rank in range(3):
        (mine,), val_r, shape_r = run_data(spec, rank)
        assert torch.equal(mine.x, everything[rank].x) and torch.equal(mine.y,
                                                                       everything[rank].y)
        assert torch.equal(val_r.y, val.y) and shape_r == shape == (10, 1, 8)
