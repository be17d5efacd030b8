"""Byte counting and sparse-selection helpers shared by the algorithms (docs/reference.md §4).

Dense messages cost 4 B per value; sparse ones 4 B value + 4 B index per element. A sender picks
the cheaper encoding, so a sparse message never costs more than the dense one (with Gaia T0=0 or
DGC sparsity 0 the traffic equals BSP's, not twice it).
"""

from __future__ import annotations

import torch

from training.algorithms.base import BYTES_PER_INDEX, BYTES_PER_VALUE, Comm, StepStats


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


def top_k_indices(values: torch.Tensor, count: int) -> torch.Tensor:
    """``[k, count]`` column indices of the ``count`` largest ``|values|`` in each row."""
    count = min(max(count, 1), values.shape[1])
    return torch.topk(values.abs(), count, dim=1, sorted=False).indices
