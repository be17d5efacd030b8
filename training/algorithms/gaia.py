"""Gaia's significance filter (docs/reference.md §4; Hsieh et al., NSDI 2017).

Per partition: momentum SGD on its own (weight-decayed) gradient, the update scaled by ``1/N``
(the learning-rate convention in base.py) and applied locally at once, and also added to an
accumulator. Element ``j`` of the accumulator is sent when ``|acc_j / w_j| > T`` with ``w`` the
partition's current (locally updated) weights, always when ``w_j == 0`` and ``acc_j != 0``;
``T = t0 * lr_factor`` so the threshold falls with the learning rate. Receivers add what others
sent; the sender zeroes it. **decision** momentum is per partition on its own gradient (the
original applies the solver's momentum locally before the filter). Gaia has no global model:
replicas differ. BatchNorm running statistics go through the same filter, as the authors filter
every blob (:meth:`Gaia.share_buffers`; ``share_buffers=False`` keeps them each partition's own,
this package's earlier behaviour). With ``t0=0`` everything is sent every iteration and Gaia
equals BSP, running statistics included.

For SkewScout (:meth:`Gaia.traveled_view`): while the learning rate has a decay ahead, a model
that travels to partition k is judged together with k's own unsent updates. Gaia drops no update
and its threshold falls tenfold at each decay, so until the last decay the replicas' drift is
traffic still owed, not accuracy lost; what lasts is how the partitions' pending updates combine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import (
    Algorithm,
    Comm,
    KnobSpec,
    StepContext,
    StepStats,
    decayed,
    per_value_lr,
    register_algorithm,
)
from training.algorithms.traffic import exchange_stats, sparse_bytes


@dataclass
class GaiaState:
    momentum: torch.Tensor      # [k, P] each partition's own velocity
    accumulated: torch.Tensor   # [k, P] local updates not yet sent
    buffer_accumulated: torch.Tensor | None = None   # [k, B] the same for running statistics


@register_algorithm
class Gaia(Algorithm):
    name = "gaia"
    KNOB = KnobSpec("t0", larger_is_less_communication=True,
                    default_grid=(0.02, 0.05, 0.10, 0.20, 0.30))
    has_global_model = False

    def __init__(self, t0: float = 0.20, share_buffers: bool = True) -> None:
        self.t0 = float(t0)
        self.shares_buffers = share_buffers
        self.validate()

    def validate(self) -> None:
        if not isinstance(self.shares_buffers, bool):
            raise ValueError(f"share_buffers must be true or false, got {self.shares_buffers!r}")
        if not self.t0 >= 0:
            raise ValueError(f"t0 must be >= 0 (significance threshold, e.g. 0.2), got {self.t0}")

    def init(self, params: torch.Tensor) -> GaiaState:
        return GaiaState(momentum=torch.zeros_like(params), accumulated=torch.zeros_like(params))

    def apply(self, state: GaiaState, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats:
        state.momentum.mul_(ctx.momentum).add_(decayed(grads, params, ctx))
        update = per_value_lr(state.momentum, ctx) * (-ctx.lr / ctx.num_partitions)
        params.add_(update)
        state.accumulated.add_(update)
        return self._filter(state.accumulated, params, ctx, comm)

    def _filter(self, accumulated: torch.Tensor, values: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        """Send the significant part of ``accumulated`` (relative to ``values``), add what the
        others sent into ``values`` and zero what was sent (both in place)."""
        threshold = self.t0 * ctx.lr_factor
        significant = accumulated.abs() > threshold * values.abs()
        sent = torch.where(significant, accumulated, 0.0)
        values.add_(_sum_of_others(comm, sent))
        accumulated.masked_fill_(significant, 0.0)
        # an exact count without sum's int64 copy of the mask (78,250 < 2**31)
        counts = significant.view(torch.uint8).sum(dim=1, dtype=torch.int32)
        nbytes = sparse_bytes(counts, values.shape[1])
        return exchange_stats(nbytes, comm, synced=False)

    def share_buffers(self, state: GaiaState, before: torch.Tensor, after: torch.Tensor,
                      step: StepStats, ctx: StepContext, comm: Comm) -> tuple[torch.Tensor,
                                                                              StepStats]:
        """Running statistics as parameters: this forward pass's change, scaled ``1/N`` like
        an update, is kept locally and accumulated; its significant part is sent."""
        if not self.shares_buffers:
            return super().share_buffers(state, before, after, step, ctx, comm)
        change = (after - before) / ctx.num_partitions
        if state.buffer_accumulated is None:
            state.buffer_accumulated = torch.zeros_like(after)
        state.buffer_accumulated.add_(change)
        kept = before + change
        return kept, self._filter(state.buffer_accumulated, kept, ctx, comm)

    def traveled_view(self, state: GaiaState, local_index: int, visitor: torch.Tensor,
                      ctx: StepContext) -> torch.Tensor:
        """While a learning-rate decay is ahead: ``visitor + acc_k``, the model the visitor's
        partition and partition k both hold once their pending updates are delivered (each
        replica is the shared model plus its own ``acc``). After the last decay no smaller
        threshold comes to deliver them, so the drift stays: the visitor as it is."""
        if not ctx.decay_ahead:
            return visitor
        return visitor + state.accumulated[local_index].to(visitor.dtype)


def _sum_of_others(comm: Comm, x: torch.Tensor) -> torch.Tensor:
    """``comm.all_sum(x) - x`` as a new tensor: the Comm's own ``all_sum_others`` where it has
    one (the simulation's: the same values without expanding the sums into a copy first)."""
    others = getattr(comm, "all_sum_others", None)
    return others(x) if others is not None else comm.all_sum(x) - x
