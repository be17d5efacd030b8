"""Bulk Synchronous Parallel: synchronous data-parallel momentum SGD (docs/reference.md §3-4).

Every iteration all partitions' (weight-decayed) gradients are averaged and every replica takes
the same momentum step, so BSP equals single-model SGD on the combined global batch. Replicas stay
identical; the engine averages BatchNorm running statistics every iteration (``synced``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import (
    Algorithm,
    Comm,
    StepContext,
    StepStats,
    decayed,
    per_value_lr,
    register_algorithm,
)
from training.algorithms.traffic import dense_stats


@dataclass
class BSPState:
    momentum: torch.Tensor   # [k, P]; the rows are identical


@register_algorithm
class BSP(Algorithm):
    name = "bsp"
    KNOB = None   # no knob: SkewScout has nothing to turn
    has_global_model = True

    def init(self, params: torch.Tensor) -> BSPState:
        return BSPState(momentum=torch.zeros_like(params))

    def apply(self, state: BSPState, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats:
        mean_grad = comm.all_mean(decayed(grads, params, ctx))
        state.momentum.mul_(ctx.momentum).add_(mean_grad)
        params.sub_(per_value_lr(state.momentum, ctx), alpha=ctx.lr)
        return dense_stats(params, comm, synced=True)
