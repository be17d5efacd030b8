"""The simulation Comm: all partitions live in one process as rows of the leading axis.

Implements the :class:`training.algorithms.base.Comm` protocol for the one-device engine
(docs/reference.md §4); ``training.distributed.DistributedComm`` is its torch.distributed twin.
:class:`GroupedComm` holds several independent runs (a seed group, docs/engine.md) in one tensor:
it reduces within each run's block of rows. :class:`WeightedComm` averages a round's participants
(partial participation) by their sample counts. :func:`gather_partitions` collects per-partition
numbers over any Comm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.algorithms.base import Comm


class LocalComm:
    """Reductions over the leading (partition) axis of a tensor holding every partition.

    Results are broadcast views (no copy): treat them as read-only.
    """

    def __init__(self, num_partitions: int) -> None:
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        self.num_partitions = num_partitions

    def _check(self, x: torch.Tensor) -> None:
        if x.shape[0] != self.num_partitions:
            raise ValueError(f"LocalComm holds all {self.num_partitions} partitions; got a tensor "
                             f"with leading axis {x.shape[0]}")

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x.sum(dim=0, keepdim=True).expand_as(x)

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        self._check(x)
        return x.mean(dim=0, keepdim=True).expand_as(x)

    def all_sum_others(self, x: torch.Tensor) -> torch.Tensor:
        """``all_sum(x) - x``: what the other rows sent (a new tensor)."""
        self._check(x)
        return x.sum(dim=0, keepdim=True) - x


class GroupedComm:
    """Reductions within each of ``num_groups`` consecutive blocks of ``num_partitions`` rows.

    A seed group stacks ``S`` runs of ``N`` partitions as one ``[S*N, ...]`` tensor (run ``s``
    holds rows ``s*N .. s*N+N-1``); every algorithm sees ``num_partitions = N`` and its
    collectives never mix runs. Each block is reduced exactly as :class:`LocalComm` reduces a
    run held alone (a sum over its leading axis), so a run's numbers do not depend on the group.
    Results are new tensors.
    """

    def __init__(self, num_groups: int, num_partitions: int) -> None:
        if num_groups < 1 or num_partitions < 1:
            raise ValueError(f"num_groups and num_partitions must be >= 1, got {num_groups}, "
                             f"{num_partitions}")
        self.num_groups = num_groups
        self.num_partitions = num_partitions

    def _blocks(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.num_groups * self.num_partitions
        if x.shape[0] != rows:
            raise ValueError(f"GroupedComm holds {self.num_groups} x {self.num_partitions} = "
                             f"{rows} rows; got a tensor with leading axis {x.shape[0]}")
        return x.reshape(self.num_groups, self.num_partitions, *x.shape[1:])

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self._blocks(x)
        # one reduction over every block's partition axis: each output value adds its block's
        # rows in the same order as LocalComm's sum over a lone run (tests/training/test_comm.py
        # holds them bit-for-bit equal), without a pass and a stack per block
        sums = blocks.sum(dim=1, keepdim=True)
        return sums.expand_as(blocks).reshape(x.shape)

    def all_sum_others(self, x: torch.Tensor) -> torch.Tensor:
        """``all_sum(x) - x`` (what every other row of the block sent), with the block sums
        broadcast into the subtraction instead of expanded into a copy first."""
        blocks = self._blocks(x)
        return (blocks.sum(dim=1, keepdim=True) - blocks).reshape(x.shape)

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        blocks = self._blocks(x)
        means = torch.stack([block.mean(dim=0) for block in blocks])
        return means.unsqueeze(1).expand_as(blocks).reshape(x.shape)


class WeightedComm:
    """A round's participants under partial participation (docs/engine.md): ``all_mean`` is
    the mean weighted by ``weights`` (one per local row, summing to 1 over all participants;
    0 for a row sitting the round out), ``all_sum`` is ``base``'s, and ``num_partitions`` is
    the number of participants (each message goes to the ``num_partitions - 1`` others).

    ``weights=None`` means equal weights over ``base``'s rows: ``base.all_mean`` itself, so an
    equal-share round averages exactly as :class:`LocalComm` does.
    """

    def __init__(self, base: Comm, weights: torch.Tensor | None, num_partitions: int) -> None:
        if num_partitions < 1:
            raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
        self.base = base
        self.weights = weights
        self.num_partitions = num_partitions

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.base.all_sum(x)

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return self.base.all_mean(x)
        w = self.weights.to(x.device, x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return self.base.all_sum(x * w)


def gather_partitions(local: torch.Tensor | Sequence[float], partition_ids: Sequence[int],
                      comm: Comm) -> list[float]:
    """Per-partition values of all ``N`` partitions, given this process's rows (any Comm).

    Row ``i`` of ``local`` belongs to partition ``partition_ids[i]``; the all-sum of a table with
    one nonzero entry per partition is a gather.
    """
    table = torch.zeros(len(partition_ids), comm.num_partitions, dtype=torch.float64)
    # local may live on an accelerator (the engine's counters): the table is gathered on the CPU
    table[torch.arange(len(partition_ids)), torch.tensor(partition_ids)] = torch.as_tensor(
        local).to("cpu", torch.float64)
    return comm.all_sum(table)[0].tolist()
