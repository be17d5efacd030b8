"""Byte counting shared by the algorithms: per-partition message and wire figures (docs/reference.md
§4), and the :class:`StepStats` record that carries them.

Dense messages cost 4 B per value; sparse ones 4 B value + 4 B index per element. A sender picks
the cheaper encoding, so a sparse message never costs more than the dense one (with Gaia T0=0 or
DGC sparsity 0 the traffic equals BSP's, not twice it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

BYTES_PER_VALUE = 4   # fp32
BYTES_PER_INDEX = 4   # int32 index of a sparse element


class Comm(Protocol):
    """Collective operations over the partition axis.

    ``x`` always has a leading axis of this process's ``k`` partitions. Results have the same
    shape, every row holding the reduction over all ``num_partitions`` partitions.
    """

    num_partitions: int

    def all_sum(self, x: torch.Tensor) -> torch.Tensor: ...

    def all_mean(self, x: torch.Tensor) -> torch.Tensor: ...


@dataclass
class StepStats:
    """Per-partition communication of one iteration (rows = this process's partitions), as
    float64 tensors on the parameters' device (counted there, read once per evaluation)."""

    bytes_sent: torch.Tensor       # [k] message bytes (module docstring)
    bytes_received: torch.Tensor   # [k]
    wire_bytes_sent: torch.Tensor  # [k] message bytes x destinations
    # True when the models were made identical this iteration; the default share_buffers then
    # averages the BatchNorm running statistics over partitions (docs/reference.md §3).
    synced: bool = False

    def __add__(self, other: StepStats) -> StepStats:
        return StepStats(self.bytes_sent + other.bytes_sent,
                         self.bytes_received + other.bytes_received,
                         self.wire_bytes_sent + other.wire_bytes_sent, self.synced or other.synced)



def dense_bytes(num_values: int) -> float:
    return float(BYTES_PER_VALUE * num_values)


def sparse_bytes(nnz: torch.Tensor, num_values: int) -> torch.Tensor:
    """Bytes of a sparse message per row: ``nnz`` value+index pairs, capped at the dense size."""
    sparse = nnz.to(torch.float64) * (BYTES_PER_VALUE + BYTES_PER_INDEX)
    return sparse.clamp(max=dense_bytes(num_values))


def dense_stats(params: torch.Tensor, comm: Comm, synced: bool) -> StepStats:
    """Every partition sends (to all ``N - 1`` others) and receives one dense ``[P]`` vector."""
    k, num_values = params.shape
    full = torch.full((k,), dense_bytes(num_values), dtype=torch.float64, device=params.device)
    return StepStats(bytes_sent=full, bytes_received=full.clone(),
                     wire_bytes_sent=full * (comm.num_partitions - 1), synced=synced)


def silent_stats(params: torch.Tensor) -> StepStats:
    """Nobody communicates this iteration."""
    zeros = torch.zeros(params.shape[0], dtype=torch.float64, device=params.device)
    return StepStats(bytes_sent=zeros, bytes_received=zeros.clone(),
                     wire_bytes_sent=zeros.clone())


def exchange_stats(sent: torch.Tensor, comm: Comm, synced: bool) -> StepStats:
    """Broadcast exchange: each partition sends its message to all ``N - 1`` others and receives
    what every *other* partition sent."""
    total = comm.all_sum(sent.unsqueeze(1)).squeeze(1)
    return StepStats(bytes_sent=sent, bytes_received=total - sent,
                     wire_bytes_sent=sent * (comm.num_partitions - 1), synced=synced)
