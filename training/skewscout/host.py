"""What SkewScout needs from a training engine (docs/reference.md §5): the :class:`ScoutHost`
protocol, and :class:`TrainerHost`, the adapter that gives it over a ``training.engine.Trainer``.

SkewScout reads a partition's model as a flat payload (to send), judges a received payload as
the destination's algorithm says (``Algorithm.traveled_view``), scores models on samples of a
partition's training data, and adds the traveling bytes to the run's totals. Keeping those
operations (the methods of :class:`ScoutHost`) here keeps the Trainer a training loop and
SkewScout free of the engine's internals: a test may hand SkewScout any object with this shape.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np
import torch

from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.evaluation import accuracy


class KnobbedAlgorithm(Protocol):
    def set_knob(self, value: float) -> None: ...


class LearningRateSchedule(Protocol):
    def lr_factor(self, iteration: int) -> float: ...


class ScoutHost(Protocol):
    """An engine as SkewScout sees it. Local partitions are addressed by their index here
    (``0..len(partition_ids)-1``); ``partition_ids`` maps them to global ids."""

    num_partitions: int                       # global N
    partition_ids: Sequence[int]              # global id of each local partition
    iteration: int                            # iterations done
    algorithm: KnobbedAlgorithm               # whose knob SkewScout sets
    config: LearningRateSchedule              # SkewScout starts a phase at each decay
    comm: Any                                 # all_sum over processes (+ exchange); None: all here
    bytes_sent: Any                           # per local partition, so far (sequence or tensor)

    def local_views(self) -> AbstractContextManager[None]:
        """While open, each partition's model is its algorithm's local view."""
        ...

    def views_just_agreed(self) -> bool: ...

    def scores_averaging(self) -> bool:
        """SkewScout scores what each averaging cost instead of traveling models."""
        ...

    def just_averaged(self) -> bool:
        """An averaging whose inputs the algorithm kept ended this iteration."""
        ...

    def before_average_accuracy(self, local_index: int, x: torch.Tensor,
                                y: torch.Tensor) -> float | None:
        """Accuracy of the partition's model just before the averaging that ended this
        iteration; None when there was none."""
        ...

    def partition_state_dict(self, local_index: int) -> dict[str, torch.Tensor]: ...

    def train_sample(self, local_index: int, n: int, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]: ...

    def model_accuracy(self, local_index: int, x: torch.Tensor, y: torch.Tensor) -> float: ...

    def model_payload(self, local_index: int,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor: ...

    def judged_payload(self, local_index: int, payload: torch.Tensor) -> torch.Tensor: ...

    def payload_accuracy(self, payload: torch.Tensor, x: torch.Tensor,
                         y: torch.Tensor) -> float: ...

    def add_bytes(self, local_index: int, sent: float, received: float,
                  wire: float | None = None) -> None: ...


def as_host(engine: Trainer | ScoutHost) -> ScoutHost:
    """The host SkewScout works with: a Trainer (which calls its callbacks with itself) wrapped
    in :class:`TrainerHost`, anything else as given."""
    return TrainerHost(engine) if isinstance(engine, Trainer) else engine


class TrainerHost:
    """:class:`ScoutHost` over a :class:`~training.engine.Trainer` (either engine)."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer

    @property
    def num_partitions(self) -> int:
        return self.trainer.num_partitions

    @property
    def partition_ids(self) -> Sequence[int]:
        return self.trainer.partition_ids

    @property
    def iteration(self) -> int:
        return self.trainer.iteration

    @property
    def algorithm(self) -> Any:
        return self.trainer.algorithm

    @property
    def config(self) -> TrainConfig:
        return self.trainer.config

    @property
    def comm(self) -> Any:
        return self.trainer.comm

    @property
    def bytes_sent(self) -> torch.Tensor:
        return self.trainer.bytes_sent

    @contextmanager
    def local_views(self) -> Iterator[None]:
        """Let each partition's model be its algorithm's local view (``Algorithm.local_view``):
        the model it would have if it had sent everything it holds. Gaia's and FedAvg's
        partitions apply their own updates at once, so their models already are; DGC keeps all
        replicas identical and each partition's unsent residual apart (traveling the replicas
        would always measure 0). Afterwards the parameters are restored exactly."""
        tr = self.trainer
        params = tr.stack.params
        view = tr.algorithm.local_view(tr.state, params, tr.context())
        if view is params:
            yield
            return
        saved = params.detach().clone()
        with torch.no_grad():
            params.copy_(view)
        try:
            yield
        finally:
            with torch.no_grad():
                params.copy_(saved)

    def views_just_agreed(self) -> bool:
        return self.trainer.algorithm.views_just_agreed(self.trainer.state)

    def scores_averaging(self) -> bool:
        return bool(self.trainer.algorithm.scores_averaging())

    def just_averaged(self) -> bool:
        return self.trainer.algorithm.before_average(self.trainer.state) is not None

    def before_average_accuracy(self, model_index: int, x: torch.Tensor,
                                y: torch.Tensor) -> float | None:
        """Accuracy of local model ``model_index`` as it was just before the averaging that
        ended this iteration (its parameters then, its buffers now: the averaging shares the
        BatchNorm statistics, so a BN model's are the averaged ones), or None."""
        tr = self.trainer
        before = tr.algorithm.before_average(tr.state)
        if before is None:
            return None
        stack = tr.stack
        _, buffers = stack.replica(model_index)
        return accuracy(stack, stack.layout.views(before[model_index]), buffers,
                        PartitionData(x, y), tr.config.eval_batch_size)

    def model_accuracy(self, model_index: int, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of local model ``model_index`` on the given data."""
        stack = self.trainer.stack
        return accuracy(stack, *stack.replica(model_index), PartitionData(x, y),
                        self.trainer.config.eval_batch_size)

    def model_payload(self, model_index: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Local model ``model_index`` as one flat tensor in ``dtype``, ready to send: its
        parameters, then its floating buffers (integer counters stay home)."""
        stack = self.trainer.stack
        _, buffers = stack.replica(model_index)
        flat = [stack.params[model_index]]
        flat += [b.reshape(-1) for b in buffers.values() if b.is_floating_point()]
        return torch.cat([t.detach().to(dtype) for t in flat])

    def payload_accuracy(self, payload: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy on the given data of a model received as :meth:`model_payload` (from any
        partition: every replica has the same layout)."""
        stack = self.trainer.stack
        flat = payload.to(stack.params.device, stack.params.dtype)
        _, own = stack.replica(0)
        floats = {name: b for name, b in own.items() if b.is_floating_point()}
        sizes = [stack.num_parameters, *(b.numel() for b in floats.values())]
        if flat.numel() != sum(sizes):
            raise ValueError(f"a payload of {flat.numel()} values for a model of {sum(sizes)}")
        params, *values = flat.split(sizes)
        # integer counters stay the receiver's own (unused in eval)
        buffers = {**own, **{name: v.view_as(b).to(b.dtype)
                             for (name, b), v in zip(floats.items(), values, strict=True)}}
        return accuracy(stack, stack.layout.views(params), buffers, PartitionData(x, y),
                        self.trainer.config.eval_batch_size)

    def judged_payload(self, local_index: int, payload: torch.Tensor) -> torch.Tensor:
        """A model received as :meth:`model_payload`, as local model ``local_index`` judges it
        (``Algorithm.traveled_view`` on its parameters; its buffers as they came)."""
        tr = self.trainer
        n = tr.stack.num_parameters
        visitor = payload[:n].to(tr.stack.params.dtype)
        view = tr.algorithm.traveled_view(tr.state, local_index, visitor, tr.context())
        if view is visitor:
            return payload
        return torch.cat([view, payload[n:].to(view.dtype)])

    def train_sample(self, local_index: int, n: int, seed: int) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """``n`` random training samples of local partition ``local_index`` (fixed by seed; all
        of them when it has fewer). A streamed partition gives the next ``n`` of a pass over its
        stream (``IterableBatchSource.take``), in the order its loader decides."""
        source = self.trainer.train_data[local_index]
        if isinstance(source, PartitionData):
            return next(iter(source.batches(min(n, len(source)), np.random.default_rng(seed))))
        return source.take(n)

    def add_bytes(self, local_index: int, sent: float, received: float,
                  wire: float | None = None) -> None:
        """Count extra traffic of a local partition (SkewScout's traveling models) in the run's
        totals; ``wire`` defaults to ``sent`` (a message to one destination)."""
        self.trainer.bytes_sent[local_index] += sent
        self.trainer.bytes_received[local_index] += received
        self.trainer.wire_bytes_sent[local_index] += sent if wire is None else wire

    def partition_state_dict(self, local_index: int) -> dict[str, torch.Tensor]:
        """A copy of local partition ``local_index``'s parameters and buffers."""
        return self.trainer.stack.state_dict(local_index)
