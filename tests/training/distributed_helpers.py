"""Shared by the torch.distributed parity tests: the tiny model and skewed data that every rank
and the simulation build, one outcome record per run, a launch that gathers every rank's
records, and the comparison of a rank's run with the simulation's."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from training.datasets import PartitionData
from training.distributed import launch_local
from training.engine import Trainer


def mlp_bn() -> nn.Module:
    """A float64 MLP with BatchNorm (so buffer averaging is exercised), 6 inputs, 3 classes."""
    return nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)).double()


def skewed_data(k: int = 2, train: int = 30, val: int = 60,
                seed: int = 0) -> tuple[list[PartitionData], PartitionData]:
    """``k`` skewed partitions (partition ``p`` lacks label ``p``) of ``train`` samples, and
    ``val`` more for validation."""
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.normal(size=(train + val, 6)))
    y = x[:, :3].argmax(dim=1)       # learnable labels
    xt, yt = x[:train], y[:train]
    parts = [PartitionData(xt[yt != p], yt[yt != p]) for p in range(k)]
    return parts, PartitionData(x[train:], y[train:])


def outcome(trainer: Trainer, result: Any, local: int) -> dict:
    """What a run of ``trainer`` leaves for its replica ``local``: parameters, buffers,
    accuracies, the accuracy curve and the byte counts."""
    return {"params": trainer.stack.params[local].clone(),
            "buffers": {n: b[local].clone() for n, b in trainer.stack.buffers.items()},
            "per_partition": result.final.per_partition, "curve": result.curve,
            "bytes_sent": result.bytes_sent, "wire": result.wire_bytes_sent,
            "received": result.bytes_received, "bytes_curve": result.bytes_curve}


def save_rank(outcomes: dict, out_dir: str, rank: int) -> None:
    """A worker's records, for :func:`launch_and_gather` to read back."""
    torch.save(outcomes, Path(out_dir) / f"rank{rank}.pt")


def launch_and_gather(worker: Callable[[int, str], None], world_size: int,
                      tmp_path: Path) -> list[dict]:
    """Run ``worker(rank, out_dir)`` in ``world_size`` gloo processes on 127.0.0.1; each rank's
    records (:func:`save_rank`), by rank."""
    launch_local(worker, world_size, (str(tmp_path),))
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world_size)]


def assert_same_run(got: dict, want: dict, label: str, rank: int) -> None:
    """A rank's parameters, buffers and accuracies equal the simulation's replica ``rank``."""
    torch.testing.assert_close(got["params"], want["params"], rtol=1e-9, atol=1e-12,
                               msg=f"{label} rank {rank} parameters")
    torch.testing.assert_close(got["buffers"], want["buffers"], rtol=1e-9, atol=1e-12)
    assert got["per_partition"] == pytest.approx(want["per_partition"]), label


def assert_ranks_match(ranks: list[dict], label: str, sim: Trainer,
                       result: Any) -> list[tuple[dict, dict]]:
    """Each rank's ``label`` run against the simulation's replica of that rank
    (:func:`assert_same_run`); the (rank's, simulation's) records, for further checks."""
    pairs = [(ranks[rank][label], outcome(sim, result, rank)) for rank in range(len(ranks))]
    for rank, (got, want) in enumerate(pairs):
        assert_same_run(got, want, label, rank)
    return pairs
