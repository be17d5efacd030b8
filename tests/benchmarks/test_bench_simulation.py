"""benchmarks/bench_simulation.py's counters, and the engine property they check: a training step
reads nothing back from the device (no per-step host sync; counters are read per evaluation)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from bench_simulation import (  # noqa: E402
    ALGORITHMS,
    Setup,
    count_ops,
    make_trainer,
    participation_table,
)


def test_the_counter_sees_what_makes_the_host_wait():
    x = torch.arange(6.0)
    assert count_ops(lambda: x * 2 + 1)[2] == 0
    assert count_ops(lambda: (x * 2).sum().item())[2] == 1          # a value read back
    assert count_ops(lambda: x[x > 2])[2] >= 1                        # a data-dependent shape
    assert count_ops(lambda: bool((x > 0).all()))[2] == 1
    ops, compute, _ = count_ops(lambda: x.view(2, 3).t())
    assert ops == 2 and compute == 0                                   # views only


@pytest.mark.parametrize("vectorize", [False, True], ids=["loop", "vmap"])
@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_a_training_step_never_waits_for_the_device(algorithm, vectorize, monkeypatch):
    from training.algorithms import sparse

    # the CPU-only candidate top-k branches on the data (exact; on the host a "sync" costs
    # nothing); accelerators run the full topk, which is what this checks
    monkeypatch.setattr(sparse, "CANDIDATE_MIN_VALUES", 1 << 62)
    trainer = make_trainer(Setup("cpu"), "lenet", algorithm, vectorize, partitions=3, batch=12)
    for _ in range(2):                  # warm-up: the vmap probe may read back once
        trainer.step()
    ops, _, syncs = count_ops(lambda: [trainer.step() for _ in range(3)])
    assert ops > 100 and syncs == 0


def test_a_participation_step_never_waits_for_the_device():
    trainer = make_trainer(Setup("cpu"), "lenet", "fedavg", False, partitions=6, batch=12,
                           participation=0.5)
    trainer.step()
    ops, _, syncs = count_ops(lambda: [trainer.step() for _ in range(2)])
    assert ops > 100 and syncs == 0


def test_the_participation_table_times_training_partitions_and_their_state():
    rows = participation_table(Setup("cpu"), "lenet", k=10, local_batch=2, participation=0.2,
                               steps=1, rounds=1)
    assert [(r["k"], r["participation"], r["training"]) for r in rows] == [
        (5, 1.0, 5), (10, 1.0, 10), (10, 0.2, 2)]
    assert rows[0]["vs_k5"] == 1.0
    # sampled-out partitions keep no parameters or momentum: 2 rows + the global model of 10
    assert rows[2]["state_mib_per_partition"] < 0.5 * rows[1]["state_mib_per_partition"]
@pytest.mark.parametrize("model", ["gn-lenet", "bn-lenet"])
def test_a_grouped_replicas_step_never_waits_for_the_device(model):
    """GN-/BN-LeNet's vectorised step runs as grouped replicas (training.grouped)."""
    trainer = make_trainer(Setup("cpu", image_size=8, in_channels=1), model, "bsp", True,
                           partitions=3, batch=12)
    assert trainer.stack.grouped
    trainer.step()
    ops, _, syncs = count_ops(lambda: [trainer.step() for _ in range(3)])
    assert ops > 50 and syncs == 0
