"""Deep Gradient Compression (docs/reference.md §4; Lin et al., ICLR 2018).

Per partition: ``u = m*u + g`` (momentum correction), ``v += lr * u``; send the top-k of ``|v|``
and zero the sent elements in both ``v`` and ``u`` (momentum factor masking). Every replica applies
``-1/N * sum_k(sent_k)``, so replicas stay identical (the engine averages BatchNorm running
statistics every iteration). Sparsity warms up 75%, 93.75%, 98.4375%, 99.6% over the first four
"epochs" of ``warmup_epoch_iterations`` each, then ``sparsity`` (the knob); a knob below a warm-up
stage wins. Optional local gradient clipping to ``clip_norm / sqrt(N)`` per partition (off).
**decision** by default top-k is taken over the whole flat parameter vector; ``per_layer=True``
takes it in each parameter tensor instead (each keeps its ``1 - sparsity`` share, at least one
value), as Lin et al.'s implementation thresholds each layer.

Residual scaling (``residual``): ``"lr_scaled"`` (default, the authors': ``v`` holds lr-scaled
updates, so a residual held across a learning-rate decay keeps the size it was accumulated at) or
``"raw"`` (``v += u`` and the sent sum is applied at the current lr: each x0.1 decay shrinks what
is still held tenfold).

SkewScout (``visitor_view``): a host judges a traveled model as ``"shared"`` (default) the model
the two partitions hold once both have sent what they hold, the visitor's view with the host's
unsent residual also applied (:meth:`DGC.traveled_view`), or ``"as_traveled"``. Every residual
reaches the replicas within an LR phase when the schedule passes :meth:`DGC.schedule_problems`,
so the shared model is what the run makes of the two (docs/skewscout.md).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
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
from training.algorithms.sparse import top_k_indices
from training.algorithms.traffic import exchange_stats, sparse_bytes

WARMUP_SPARSITY = (0.75, 0.9375, 0.984375, 0.996)
RESIDUALS = ("lr_scaled", "raw")
VISITOR_VIEWS = ("shared", "as_traveled")
# What each learning-rate phase after a decay must be able to send, in model-equivalents (the
# sum over its iterations of the share of values sent): below one, the residual held across the
# decay cannot drain and dominates what is sent after it. The authors' runs send ~16 per phase
# (64,000 iterations at 99.9%: 16,000-iteration phases).
MIN_MODEL_EQUIVALENTS_PER_PHASE = 1.0


@dataclass
class DGCState:
    momentum: torch.Tensor      # u [k, P]
    accumulated: torch.Tensor   # v [k, P]


@register_algorithm
class DGC(Algorithm):
    name = "dgc"
    KNOB = KnobSpec("sparsity", larger_is_less_communication=True,
                    default_grid=(0.9, 0.99, 0.999, 0.9999))
    has_global_model = True

    def __init__(self, sparsity: float = 0.999, warmup_epoch_iterations: int = 1000,
                 clip_norm: float | None = None, per_layer: bool = False,
                 residual: str = "lr_scaled", visitor_view: str = "shared") -> None:
        self.sparsity = float(sparsity)
        self.residual = residual
        self.visitor_view = visitor_view
        self.warmup_epoch_iterations = int(warmup_epoch_iterations)
        self.clip_norm = clip_norm
        self.per_layer = per_layer
        self.layers: tuple[int, ...] | None = None    # values per parameter tensor (bound)
        self.validate()

    def bind_layers(self, sizes: Sequence[int]) -> None:
        self.layers = tuple(int(n) for n in sizes)

    def validate(self) -> None:
        if self.residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {self.residual!r}")
        if self.visitor_view not in VISITOR_VIEWS:
            raise ValueError(f"visitor_view must be one of {VISITOR_VIEWS}, "
                             f"got {self.visitor_view!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1) (fraction not sent, e.g. 0.999), "
                             f"got {self.sparsity}")
        if self.warmup_epoch_iterations < 0:
            raise ValueError("warmup_epoch_iterations must be >= 0 (0 disables the warm-up)")
        if self.clip_norm is not None and not self.clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {self.clip_norm}")
        if not isinstance(self.per_layer, bool):   # bool("false") would be True
            raise ValueError(f"per_layer must be true or false, got {self.per_layer!r}")

    def sparsity_at(self, iteration: int) -> float:
        """The sparsity in force at ``iteration`` (warm-up stage, capped by the knob)."""
        if self.warmup_epoch_iterations > 0:
            stage = iteration // self.warmup_epoch_iterations
            if stage < len(WARMUP_SPARSITY):
                return min(WARMUP_SPARSITY[stage], self.sparsity)
        return self.sparsity

    def schedule_problems(self, iterations: int, lr_phases: Sequence[range]) -> list[str]:
        """The knob must be in force at some iteration (the warm-up must end within the run),
        and every phase after a learning-rate decay must send at least
        :data:`MIN_MODEL_EQUIVALENTS_PER_PHASE` model-equivalents (warm-up counted)."""
        w = self.warmup_epoch_iterations
        starts = [s * w for s in range(len(WARMUP_SPARSITY) + 1) if s * w < iterations]
        if not any(self.sparsity_at(i) == self.sparsity for i in starts):
            return [f"sparsity={self.sparsity:g} is never in force: the warm-up "
                    f"({len(WARMUP_SPARSITY)} x warmup_epoch_iterations={w}) outlasts the "
                    f"{iterations} iterations; give warmup_epoch_iterations < "
                    f"{-(-iterations // len(WARMUP_SPARSITY))} (e.g. one epoch of a partition)"]
        after_decay = list(lr_phases)[1:]
        if not after_decay:
            return []
        sent = {p: sum(1.0 - self.sparsity_at(i) for i in p) for p in after_decay}
        worst = min(after_decay, key=lambda p: sent[p])
        if sent[worst] >= MIN_MODEL_EQUIVALENTS_PER_PHASE:
            return []
        scale = MIN_MODEL_EQUIVALENTS_PER_PHASE / max(sent[worst], 1e-12)
        return [f"sparsity={self.sparsity:g} sends {sent[worst]:.2f} model-equivalents in the "
                f"learning-rate phase of iterations {worst.start}-{worst.stop - 1} (at least "
                f"{MIN_MODEL_EQUIVALENTS_PER_PHASE:g} needed): the residual held across the decay "
                "cannot drain; give sparsity <= "
                f"{1 - MIN_MODEL_EQUIVALENTS_PER_PHASE / len(worst):.4g} or train about "
                f"{-(-iterations * scale // 100) * 100:.0f} iterations or more (warm-up scaled "
                "alike)"]

    def init(self, params: torch.Tensor) -> DGCState:
        return DGCState(momentum=torch.zeros_like(params), accumulated=torch.zeros_like(params))

    def apply(self, state: DGCState, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats:
        grads = decayed(grads, params, ctx)
        if self.clip_norm is not None:
            limit = self.clip_norm / math.sqrt(ctx.num_partitions)
            norms = grads.norm(dim=1, keepdim=True)
            grads = grads * (limit / norms.clamp(min=limit))
        state.momentum.mul_(ctx.momentum).add_(grads)
        # per-value lr enters the residual: top-k then ranks what the updates will be
        state.accumulated.add_(per_value_lr(state.momentum, ctx), alpha=self._scale(ctx.lr))
        num_values = params.shape[1]
        index = self._select(state.accumulated, 1.0 - self.sparsity_at(ctx.iteration))
        sent = torch.zeros_like(params).scatter_(1, index, state.accumulated.gather(1, index))
        params.sub_(comm.all_sum(sent), alpha=self._apply_scale(ctx))
        state.accumulated.scatter_(1, index, 0.0)
        state.momentum.scatter_(1, index, 0.0)
        counts = torch.full((params.shape[0],), index.shape[1], device=params.device)
        nbytes = sparse_bytes(counts, num_values)
        return exchange_stats(nbytes, comm, synced=True)

    def _scale(self, lr: float) -> float:
        """What the residual accumulates ``u`` with: ``lr`` (lr-scaled residual) or 1 (raw)."""
        return lr if self.residual == "lr_scaled" else 1.0

    def _apply_scale(self, ctx: StepContext) -> float:
        """What the sum of sent residuals is applied with: ``1/N`` (lr-scaled) or ``lr/N``."""
        return (1.0 if self.residual == "lr_scaled" else ctx.lr) / ctx.num_partitions

    def local_view(self, state: DGCState, params: torch.Tensor,
                   ctx: StepContext) -> torch.Tensor:
        """``w - v_k/N`` (``w - lr/N * v_k`` with a raw residual): the replicas are identical and
        each partition holds its unsent residual apart, so traveling the replicas themselves
        would always measure no skew."""
        return params - state.accumulated * self._apply_scale(ctx)

    def traveled_view(self, state: DGCState, local_index: int, visitor: torch.Tensor,
                      ctx: StepContext) -> torch.Tensor:
        """``visitor - v_k/N`` (``visitor_view="shared"``): the visitor is ``w - v_j/N``, so this
        is ``w - (v_j + v_k)/N``, the replicas once partitions j and k have both sent what they
        hold. Judged as it traveled, a visitor differs from its host by both residuals at full
        size, which reads as skew (0.2-1.0 at sparsity 0.99 before the first decay) that the
        run never loses: every residual of a schedule that drains reaches the replicas."""
        if self.visitor_view == "as_traveled":
            return visitor
        held = state.accumulated[local_index].to(visitor.dtype)
        return visitor - held * self._apply_scale(ctx)

    def _select(self, values: torch.Tensor, kept: float) -> torch.Tensor:
        """``[k, m]`` indices of the values to send: the top ``kept`` share by magnitude (at
        least one), over the whole vector or in each layer."""
        if not self.per_layer:
            return top_k_indices(values, round(values.shape[1] * kept))
        if self.layers is None or sum(self.layers) != values.shape[1]:
            raise ValueError("per_layer DGC needs the model's layer sizes: run it in a Trainer "
                             "(which calls bind_layers) or call bind_layers(sizes) first")
        parts, start = [], 0
        for n in self.layers:
            chunk = values[:, start:start + n]
            parts.append(top_k_indices(chunk, round(n * kept)) + start)
            start += n
        return torch.cat(parts, dim=1)
