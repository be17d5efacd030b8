"""Partial participation: each round a seeded sample of the partitions trains (McMahan et al.
2017, "Communication-Efficient Learning of Deep Networks from Decentralized Data", Algorithm 1;
docs/engine.md "Partial participation").

A *round* is the algorithm's averaging cycle (FedAvg: ``iter_local`` steps; the algorithm says
when one ends: ``Algorithm.round_ended``). At the start of every round :func:`sample_participants`
draws ``m`` of the ``N`` partitions without replacement from ``numpy.random.Generator([seed,
ROUND_STREAM, round])``: the same sample on both engines, whatever ran before. :class:`Rounds`
keeps the engine's side of it:

- **rows**: in the one-device simulation the stack holds ``m`` rows (slots), row ``j`` training
  participant ``j`` of the round; a sampled-out partition costs no compute and no memory beyond
  its data. Under torch.distributed a rank holds its own row and sits a round out
  (``Algorithm.sit_out``: no forward/backward, zero weight in the averaging) when not sampled.
- **weights**: the participants' models are averaged weighted by their sample counts,
  ``n_p / sum of n over the round's participants`` (:class:`training.comm.WeightedComm`); equal
  shares give the plain mean.
- **the global model**: a copy of the model every partition holds at a round's end, which a
  sampled-out partition is evaluated with (one row, refreshed once per round).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from training.algorithms.base import Algorithm, Comm, algorithm_class, list_algorithms
from training.comm import LocalComm, WeightedComm, gather_partitions
from training.datasets import PartitionData
from training.evaluation import EvalResult, accuracy, round_robin_shard
from training.functional import StackedModel

ROUND_STREAM = 0x726F756E64   # "round": keeps the sample's stream apart from the partitions'


def check_participation(participation: object) -> None:
    """One-line ValueError unless ``participation`` is a fraction in (0, 1] (a float) or a
    count of partitions >= 1 (an int)."""
    ok = (isinstance(participation, int) and not isinstance(participation, bool)
          and participation >= 1) or (isinstance(participation, float) and 0 < participation <= 1)
    if not ok:
        raise ValueError(f"participation must be a fraction in (0, 1] (e.g. 0.1) or a count of "
                         f"partitions >= 1 (e.g. 10), got {participation!r}")


def participants_per_round(participation: float | int, num_partitions: int) -> int:
    """How many partitions train each round: an integer is a count, a float a fraction of
    ``num_partitions`` (rounded to the nearest count, at least 1)."""
    check_participation(participation)
    if isinstance(participation, int):
        if participation > num_partitions:
            raise ValueError(f"participation={participation} partitions per round, but there "
                             f"are {num_partitions}; give a count in 1..{num_partitions} or a "
                             "fraction in (0, 1]")
        return participation
    return max(1, int(participation * num_partitions + 0.5))


def sample_participants(seed: int, round_index: int, num_partitions: int,
                        count: int) -> list[int]:
    """The partitions of round ``round_index`` (0-based), sorted: ``count`` of
    ``num_partitions`` without replacement, a function of ``(seed, round_index)`` only."""
    rng = np.random.default_rng([seed, ROUND_STREAM, round_index])
    return sorted(int(p) for p in rng.choice(num_partitions, size=count, replace=False))


def supporting_algorithms() -> list[str]:
    """The registered algorithms that run under partial participation."""
    return [name for name in list_algorithms() if algorithm_class(name).supports_participation]


def check_supported(algorithm: Algorithm | str) -> None:
    """One-line ValueError when ``algorithm`` does not support partial participation."""
    cls = algorithm_class(algorithm) if isinstance(algorithm, str) else type(algorithm)
    if not cls.supports_participation:
        raise ValueError(f"{cls.name} does not support partial participation; drop "
                         f"participation or use one of: {', '.join(supporting_algorithms())}")


def partition_size(source: object) -> int | None:
    """Samples in a partition, or None for a stream of unknown length."""
    try:
        return len(source)   # type: ignore[arg-type]
    except TypeError:
        return None


class Rounds:
    """The engine's round bookkeeping under partial participation (module docstring).

    ``local_ids``: the partitions this process holds (all ``N`` in the simulation, its rank
    under torch.distributed); ``sizes``: every partition's sample count (None: unknown, equal
    weights); ``comm``: the engine's Comm over all partitions.
    """

    def __init__(self, algorithm: Algorithm, seed: int, num_partitions: int, count: int,
                 local_ids: Sequence[int], sizes: Sequence[int] | None, comm: Comm) -> None:
        self.algorithm, self.seed, self.count = algorithm, seed, count
        self.num_partitions, self.local_ids, self.base = num_partitions, list(local_ids), comm
        self.sizes = None if sizes is None or len(set(sizes)) == 1 else list(sizes)
        self.rows = min(len(self.local_ids), count)
        # the round's reductions: over the slots in the simulation, over the ranks otherwise
        self.slots = LocalComm(self.rows) if isinstance(comm, LocalComm) else comm
        self.round_index = -1
        self.participants: list[int] = []
        self.active: list[int] = []      # local positions training this round; row j: active[j]
        self.active_index = torch.zeros(0, dtype=torch.long)   # the same, on the device
        self.comm = WeightedComm(self.slots, None, count)
        self.global_params: torch.Tensor | None = None
        self.global_buffers: dict[str, torch.Tensor] = {}

    def begin(self, state: object, device: torch.device) -> None:
        """Sample the next round and hand its rows to the algorithm."""
        self.round_index += 1
        self.participants = sample_participants(self.seed, self.round_index,
                                                self.num_partitions, self.count)
        chosen = set(self.participants)
        self.active = [i for i, p in enumerate(self.local_ids) if p in chosen]
        if self.active:
            self.algorithm.begin_round(state, [self.local_ids[i] for i in self.active])
        self.comm = WeightedComm(self.slots, self._weights(device), self.count)
        self.active_index = torch.tensor(self.active, dtype=torch.long, device=device)

    def _weights(self, device: torch.device) -> torch.Tensor | None:
        """Each row's share of the round's average (n_p / n_round; 0 for an idle row)."""
        every_row = len(self.active) == self.rows and isinstance(self.slots, LocalComm)
        if self.sizes is None and every_row:
            return None                  # LocalComm's own mean: bit-for-bit the plain average
        sizes = self.sizes or [1] * self.num_partitions
        total = sum(sizes[p] for p in self.participants)
        weights = torch.zeros(self.rows, dtype=torch.float64)
        for row, i in enumerate(self.active):
            weights[row] = sizes[self.local_ids[i]] / total
        return weights.to(device)

    def store_global(self, stack: StackedModel) -> None:
        """Keep the model every partition holds now (a round just ended: all rows agree)."""
        self.global_params = stack.params[0].clone()
        self.global_buffers = {n: b[0].clone() for n, b in stack.buffers.items()}

    def finite(self, stack: StackedModel) -> torch.Tensor:
        """Whether each local partition's model is finite (``[len(local_ids)]``): its row
        while it trains, else the global model."""
        assert self.global_params is not None
        ok = torch.isfinite(self.global_params).all().expand(len(self.local_ids)).clone()
        if self.active:
            ok[self.active_index] = torch.isfinite(stack.params[:len(self.active)]).all(dim=1)
        return ok

    def evaluate(self, stack: StackedModel, val: PartitionData, batch_size: int,
                 with_global: bool) -> EvalResult:
        """The paper's protocol (training.evaluation.evaluate) with each partition's model:
        its row while it trains this round, else the global model (predicted on the whole
        validation set once when several partitions share it)."""
        assert self.global_params is not None
        n, rows = self.num_partitions, dict(zip(self.active, range(len(self.active)),
                                                 strict=True))
        params = stack.layout.views(self.global_params)
        idle = [i for i in range(len(self.local_ids)) if i not in rows]
        preds = (stack.predict(params, self.global_buffers, val.x, batch_size)
                 if len(idle) > 1 else None)
        labels = val.y.cpu()
        local_acc = []
        for i, pid in enumerate(self.local_ids):
            if i in rows:
                model = stack.replica(rows[i])
            elif preds is not None:
                local_acc.append(float((preds[pid::n] == labels[pid::n]).float().mean()))
                continue
            else:
                model = (params, self.global_buffers)
            local_acc.append(accuracy(stack, *model, round_robin_shard(val, pid, n), batch_size))
        per_partition = gather_partitions(local_acc, self.local_ids, self.base)
        global_acc = None
        if with_global:   # the model the round's averaging produces (its rows' weighted mean)
            global_acc = accuracy(stack, *stack.mean_replica(self.comm), val, batch_size)
        return EvalResult(per_partition, sum(per_partition) / n, global_acc)
