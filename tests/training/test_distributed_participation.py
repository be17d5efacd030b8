"""Partial participation on torch.distributed: 3 gloo processes (ranks = partitions) compute the
same FedAvg run as the simulation, and a sampled-out rank does no forward/backward."""


import numpy as np
import pytest
import torch

from tests.training.distributed_helpers import launch_and_gather, mlp_bn, save_rank
from training.algorithms import create_algorithm
from training.datasets import PartitionData
from training.distributed import distributed_trainer
from training.engine import TrainConfig, Trainer
from training.participation import sample_participants

CONFIG = TrainConfig(iterations=6, batch_size=12, lr=0.2, eval_every=3, eval_batch_size=32,
                     seed=4, progress=False, participation=2)
ITER_LOCAL = 2


def _data() -> tuple[list[PartitionData], PartitionData]:
    """3 partitions of unequal sizes (the average is weighted) and a validation set."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(120, 6)))
    y = x[:, :3].argmax(dim=1)
    parts = [PartitionData(x[a:b], y[a:b]) for a, b in ((0, 20), (20, 50), (50, 60))]
    return parts, PartitionData(x[60:], y[60:])


def _worker(rank: int, out_dir: str) -> None:
    parts, val = _data()
    trainer = distributed_trainer(mlp_bn, create_algorithm("fedavg", iter_local=ITER_LOCAL),
                                  parts, val, CONFIG)
    calls = []
    gradients = trainer.stack.gradients

    def counted(x, y):
        calls.append(trainer.iteration)
        return gradients(x, y)

    trainer.stack.gradients = counted
    result = trainer.run()
    save_rank({"params": trainer.stack.params[0].clone(),
                "buffers": {n: b[0].clone() for n, b in trainer.stack.buffers.items()},
                "calls": calls, "curve": result.curve, "global_curve": result.global_curve,
                "per_partition": result.final.per_partition, "bytes_sent": result.bytes_sent,
                "wire": result.wire_bytes_sent}, out_dir, rank)


def test_distributed_participation_matches_the_simulation(tmp_path):
    ranks = launch_and_gather(_worker, 3, tmp_path)
    parts, val = _data()
    sim = Trainer(mlp_bn, create_algorithm("fedavg", iter_local=ITER_LOCAL), parts, val, CONFIG)
    result = sim.run()
    rounds = [sample_participants(CONFIG.seed, r, 3, 2) for r in range(3)]
    assert {p for chosen in rounds for p in chosen} == {0, 1, 2}   # every rank trains sometime
    for rank, got in enumerate(ranks):
        # forward/backward only in the iterations of the rounds the rank was sampled for
        assert got["calls"] == [it for it in range(6) if rank in rounds[it // ITER_LOCAL]]
        torch.testing.assert_close(got["params"], sim.stack.params[0], rtol=1e-9, atol=1e-12)
        for name, buffer in got["buffers"].items():   # running statistics (not the step count)
            if buffer.is_floating_point():
                torch.testing.assert_close(buffer, sim.stack.buffers[name][0], rtol=1e-9,
                                           atol=1e-12)
        assert got["per_partition"] == pytest.approx(result.final.per_partition)
        for curve in ("curve", "global_curve"):     # iteration 3 is mid-round
            want = getattr(result, curve)
            assert [i for i, _ in got[curve]] == [i for i, _ in want] == [3, 6]
            assert [a for _, a in got[curve]] == pytest.approx([a for _, a in want])
        assert got["bytes_sent"] == pytest.approx(result.bytes_sent)
        assert got["wire"] == pytest.approx(result.wire_bytes_sent)
