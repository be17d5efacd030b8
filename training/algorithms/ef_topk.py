"""Error-feedback top-k SGD (EF-SGD: Stich, Cordonnier and Jaggi, "Sparsified SGD with Memory",
NeurIPS 2018; Karimireddy et al., "Error Feedback Fixes SignSGD and other Gradient Compression
Schemes", ICML 2019), the baseline DGC (:mod:`training.algorithms.dgc`) improves on.

Per partition: ``e <- e + lr * g`` (the error memory, lr-scaled); send the top-k of ``|e|``;
``e <- e - sent``. Every replica applies ``1/N * sum_k(sent_k)``, so replicas stay identical. No
momentum correction and no momentum factor masking: the run's SGD momentum acts on the applied
sum, the same on every replica (``u <- momentum * u + 1/N sum_k(sent_k)``, ``w <- w - u``; with
momentum 0 this is EF-SGD exactly, and with sparsity 0 momentum SGD on the mean gradient, BSP).
The knob, its grid, top-k (whole model or ``per_layer``), the optional sparsity warm-up (off
here), the byte counts (4 B value + 4 B index per element, capped at dense), the schedule check
(every phase after a decay must drain its residual) and the local view ``w - e_k / N`` are DGC's.
"""

from __future__ import annotations

import torch

from training.algorithms.base import (
    Comm,
    StepContext,
    StepStats,
    decayed,
    per_value_lr,
    register_algorithm,
)
from training.algorithms.dgc import DGC, DGCState
from training.algorithms.traffic import exchange_stats, sparse_bytes


@register_algorithm
class EFTopK(DGC):
    """DGC's state is reused: ``accumulated`` is the error memory ``e``, ``momentum`` the
    velocity ``u`` of the applied sum (rows identical)."""

    name = "ef_topk"

    def __init__(self, sparsity: float = 0.999, per_layer: bool = False,
                 warmup_epoch_iterations: int = 0) -> None:
        super().__init__(sparsity=sparsity, warmup_epoch_iterations=warmup_epoch_iterations,
                         per_layer=per_layer)

    def apply(self, state: DGCState, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats:
        error = state.accumulated
        error.add_(per_value_lr(decayed(grads, params, ctx), ctx), alpha=ctx.lr)
        index = self._select(error, 1.0 - self.sparsity_at(ctx.iteration))
        sent = torch.zeros_like(params).scatter_(1, index, error.gather(1, index))
        error.scatter_(1, index, 0.0)
        applied = comm.all_sum(sent) / ctx.num_partitions
        params.sub_(state.momentum.mul_(ctx.momentum).add_(applied))
        counts = torch.full((params.shape[0],), index.shape[1], device=params.device)
        return exchange_stats(sparse_bytes(counts, params.shape[1]), comm, synced=True)
