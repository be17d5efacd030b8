"""FedBN: Federated Averaging that keeps BatchNorm local (Li et al., ICLR 2021, Algorithm 1).

FedAvg (training.algorithms.fedavg: local momentum SGD, averaging every ``iter_local`` steps and
at the run's last iteration) in which the values of BatchNorm layers never leave their partition:
the averaging skips the BN affine weight and bias, and the BN running mean and variance are not
averaged either. Everything else is averaged as FedAvg averages it. A partition's message is the
model without its BatchNorm values (4 B per value), so the bytes exclude them.

The engine says which values are BatchNorm ones (:meth:`Algorithm.bind_batch_norm`, from the
model's module types); told nothing (an algorithm driven by hand), FedBN equals FedAvg. On a model
without BatchNorm (GN-LeNet) it equals FedAvg too.

Scoring: each partition keeps a model of its own (shared layers plus its own BatchNorm), so there
is no global model (``has_global_model = False``). As in the FedBN paper every partition's own
model is scored and the accuracies averaged over partitions; each is scored on its round-robin
shard of the shared validation set (the engine's protocol for every algorithm,
training.evaluation), where the paper scores each client on a test split of its own domain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import Comm, StepContext, StepStats, register_algorithm
from training.algorithms.fedavg import FedAvg, FedAvgState
from training.algorithms.traffic import dense_stats, silent_stats


@dataclass
class FedBNState(FedAvgState):
    shared: torch.Tensor | None = None           # [S] indices of the averaged parameters
    shared_buffers: torch.Tensor | None = None   # [S_b] indices of the averaged buffers


@register_algorithm
class FedBN(FedAvg):
    name = "fedbn"
    has_global_model = False
    local_batch_norm = True
    # a round's participants start from the global model: the BatchNorm values a partition
    # keeps for good would need a store across the rounds it sits out (not built)
    supports_participation = False

    def __init__(self, iter_local: int = 50, local_lr: str = "per_partition") -> None:
        super().__init__(iter_local=iter_local, local_lr=local_lr)
        self._bn_params: torch.Tensor | None = None
        self._bn_buffers: torch.Tensor | None = None

    def bind_batch_norm(self, params: torch.Tensor, buffers: torch.Tensor) -> None:
        self._bn_params, self._bn_buffers = params.bool(), buffers.bool()

    def init(self, params: torch.Tensor) -> FedBNState:
        return FedBNState(momentum=torch.zeros_like(params),
                          shared=_shared_indices(self._bn_params, params))

    def average(self, state: FedBNState, params: torch.Tensor,  # type: ignore[override]
                ctx: StepContext, comm: Comm) -> StepStats:
        """Average the values outside BatchNorm; the BatchNorm ones stay each partition's."""
        if state.shared is None:
            state.shared = _shared_indices(self._bn_params, params)
        return _average_columns(params, state.shared, comm)

    def share_buffers(  # type: ignore[override]
            self, state: FedBNState, before: torch.Tensor, after: torch.Tensor, step: StepStats,
            ctx: StepContext, comm: Comm) -> tuple[torch.Tensor, StepStats]:
        """At an averaging, the floating buffers outside BatchNorm (none in the registered
        models) are averaged; BatchNorm running statistics stay each partition's."""
        if not step.synced:
            return after, silent_stats(after)
        if state.shared_buffers is None:
            state.shared_buffers = _shared_indices(self._bn_buffers, after)
        kept = after.clone()
        return kept, _average_columns(kept, state.shared_buffers, comm)


def _shared_indices(batch_norm: torch.Tensor | None, values: torch.Tensor) -> torch.Tensor:
    """The columns of ``values`` ([k, n]) outside BatchNorm, on its device."""
    n = values.shape[1]
    if batch_norm is None:
        return torch.arange(n, device=values.device)
    if batch_norm.numel() != n:
        raise ValueError(f"the BatchNorm mask has {batch_norm.numel()} values for {n} model "
                         "values; bind_batch_norm takes the masks of this model")
    return (~batch_norm).nonzero().flatten().to(values.device)


def _average_columns(values: torch.Tensor, columns: torch.Tensor, comm: Comm) -> StepStats:
    """Replace ``values[:, columns]`` by their mean over partitions (in place); the message is
    those columns, dense."""
    sent = values.index_select(1, columns)
    if columns.numel():       # no empty all-reduce (a model of BatchNorm values only)
        values.index_copy_(1, columns, comm.all_mean(sent))
    return dense_stats(sent, comm, synced=True)
