"""FedBN and FixBN on the torch.distributed engine: 2 gloo processes on 127.0.0.1 compute the
same run as the 2-partition simulation (parameters, BatchNorm statistics, accuracies, bytes)."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from training.algorithms import create_algorithm
from training.datasets import PartitionData
from training.distributed import distributed_trainer, launch_local
from training.engine import TrainConfig, Trainer

CONFIG = TrainConfig(iterations=6, batch_size=16, lr=0.1, eval_every=3, eval_batch_size=32,
                     seed=3, progress=False)
RUNS = {   # label -> (algorithm, its params, TrainConfig changes)
    "fedbn": ("fedbn", {"iter_local": 2}, {}),
    "bsp/fixbn": ("bsp", {}, {"norm_stats": "fixbn"}),
    "fedavg/fixbn": ("fedavg", {"iter_local": 4}, {"norm_stats": "fixbn", "fixbn_switch": 0.4}),
}


def _model() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()


def _data() -> tuple[list[PartitionData], PartitionData]:
    """2 skewed partitions (partition ``p`` lacks label ``p``) and 60 validation samples."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(90, 6)))
    y = x[:, :3].argmax(dim=1)
    xt, yt = x[:30], y[:30]
    return [PartitionData(xt[yt != p], yt[yt != p]) for p in range(2)], PartitionData(x[30:],
                                                                                      y[30:])


def _trainer(label: str, parts, val, make):
    name, params, changes = RUNS[label]
    return make(_model, create_algorithm(name, **params), parts, val, replace(CONFIG, **changes))


def _outcome(trainer: Trainer, result, local: int) -> dict:
    return {"params": trainer.stack.params[local].clone(),
            "buffers": {n: b[local].clone() for n, b in trainer.stack.buffers.items()},
            "per_partition": result.final.per_partition, "bytes_sent": result.bytes_sent}


def _worker(rank: int, out_dir: str) -> None:
    parts, val = _data()
    outcomes = {}
    for label in RUNS:
        trainer = _trainer(label, parts, val, distributed_trainer)
        outcomes[label] = _outcome(trainer, trainer.run(), 0)
    torch.save(outcomes, Path(out_dir) / f"rank{rank}.pt")


def test_fedbn_and_fixbn_match_the_simulation(tmp_path):
    launch_local(_worker, 2, (str(tmp_path),))
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    parts, val = _data()
    for label in RUNS:
        sim = _trainer(label, parts, val, Trainer)
        result = sim.run()
        for rank in range(2):
            got, want = ranks[rank][label], _outcome(sim, result, rank)
            torch.testing.assert_close(got["params"], want["params"], rtol=1e-9, atol=1e-12,
                                       msg=f"{label} rank {rank} parameters")
            torch.testing.assert_close(got["buffers"], want["buffers"], rtol=1e-9, atol=1e-12)
            assert got["per_partition"] == pytest.approx(want["per_partition"]), label
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
