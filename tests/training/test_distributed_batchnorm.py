"""FedBN and FixBN on the torch.distributed engine: 2 gloo processes on 127.0.0.1 compute the
same run as the 2-partition simulation (parameters, BatchNorm statistics, accuracies, bytes)."""

from dataclasses import replace

import pytest
import torch

from tests.training.distributed_helpers import (
    assert_ranks_match,
    launch_and_gather,
    mlp_bn,
    outcome,
    save_rank,
    skewed_data,
)
from training.algorithms import create_algorithm
from training.distributed import distributed_trainer
from training.engine import TrainConfig, Trainer

CONFIG = TrainConfig(iterations=6, batch_size=16, lr=0.1, eval_every=3, eval_batch_size=32,
                     seed=3, progress=False)
RUNS = {   # label -> (algorithm, its params, TrainConfig changes)
    "fedbn": ("fedbn", {"iter_local": 2}, {}),
    "bsp/fixbn": ("bsp", {}, {"norm_stats": "fixbn"}),
    "fedavg/fixbn": ("fedavg", {"iter_local": 4}, {"norm_stats": "fixbn", "fixbn_switch": 0.4}),
}


def _trainer(label: str, parts, val, make):
    name, params, changes = RUNS[label]
    return make(mlp_bn, create_algorithm(name, **params), parts, val, replace(CONFIG, **changes))


def _worker(rank: int, out_dir: str) -> None:
    parts, val = skewed_data()
    outcomes = {}
    for label in RUNS:
        trainer = _trainer(label, parts, val, distributed_trainer)
        outcomes[label] = outcome(trainer, trainer.run(), 0)
    save_rank(outcomes, out_dir, rank)


def test_fedbn_and_fixbn_match_the_simulation(tmp_path):
    ranks = launch_and_gather(_worker, 2, tmp_path)
    parts, val = skewed_data()
    for label in RUNS:
        sim = _trainer(label, parts, val, Trainer)
        result = sim.run()
        for got, want in assert_ranks_match(ranks, label, sim, result):
            assert got["bytes_sent"] == pytest.approx(want["bytes_sent"]), label
    fedbn = [ranks[r]["fedbn"] for r in range(2)]
    assert not torch.equal(fedbn[0]["buffers"]["1.running_mean"],
                           fedbn[1]["buffers"]["1.running_mean"])   # each rank's own BN
    for label in ("bsp/fixbn", "fedavg/fixbn"):    # frozen at their mean: the same on both ranks
        stats = [ranks[r][label]["buffers"] for r in range(2)]
        assert torch.equal(stats[0]["1.running_var"], stats[1]["1.running_var"])
    # BatchNorm steps before the switch (round(0.5 x 6), round(0.4 x 6)), none after
    assert ranks[0]["bsp/fixbn"]["buffers"]["1.num_batches_tracked"].item() == 3
    assert ranks[0]["fedavg/fixbn"]["buffers"]["1.num_batches_tracked"].item() == 2
