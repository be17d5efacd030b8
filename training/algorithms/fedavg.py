"""Federated Averaging (docs/reference.md §4).

Each partition takes local momentum SGD steps; after every ``iter_local`` local steps all models
(and BatchNorm running statistics, :meth:`Algorithm.share_buffers`) are replaced by their mean.
Momentum stays local and is kept across averaging. With every partition taking part the mean is
unweighted (the authors' partitions hold equal shares). The count of steps since the last
averaging lives in the state, so SkewScout may change ``iter_local`` mid-run. The run's last
iteration (``StepContext.is_final``) always averages, so FedAvg is scored on the averaged model,
at the point of its cycle the authors score it (their 63,000 iterations are a multiple of every
IterLocal they ran).

Partial participation (``TrainConfig.participation``, McMahan et al. 2017, docs/engine.md): a
round is one averaging cycle (``iter_local`` steps). Each round the sampled partitions start
from the global model with fresh momentum (stateless clients: no state is kept for a partition
between its rounds) and the new global model is their mean weighted by sample counts (the
engine's ``Comm.all_mean``).

Local learning rate (``local_lr``): ``"per_partition"`` (default, the authors' runs: each worker's
Caffe solver has ``lr / N``, e.g. 0.01/5) or ``"global"`` (``lr``; then ``iter_local=1`` equals
BSP, while per-partition it is BSP at ``lr / N``).

SkewScout (``visitor_view``): ``"as_traveled"`` (default) judges a traveled model as it is;
``"average"`` travels nothing and instead scores what each averaging cost: at an averaging the
partitions' models just before it are kept (:meth:`FedAvg.before_average`), and each partition
scores its own model before and the new global model after on a sample of its training data
(``training.skewscout.scout.averaging_round``). The average is computed anyway, so the estimate
costs no bytes (docs/skewscout.md).
"""

from __future__ import annotations

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
from training.algorithms.traffic import dense_stats, silent_stats

LOCAL_LR = ("per_partition", "global")
VISITOR_VIEWS = ("as_traveled", "average")


@dataclass
class FedAvgState:
    momentum: torch.Tensor      # [k, P], each partition's own
    steps_since_sync: int = 0
    # the models just before the latest averaging ([k, P]; visitor_view="average" only)
    before_average: torch.Tensor | None = None


@register_algorithm
class FedAvg(Algorithm):
    name = "fedavg"
    KNOB = KnobSpec("iter_local", larger_is_less_communication=True,
                    default_grid=(5, 10, 50, 200, 1000))
    has_global_model = True
    supports_participation = True

    def __init__(self, iter_local: int = 50, local_lr: str = "per_partition",
                 visitor_view: str = "as_traveled") -> None:
        self.iter_local = int(iter_local)
        self.local_lr = local_lr
        self.visitor_view = visitor_view
        self.validate()

    def validate(self) -> None:
        if self.local_lr not in LOCAL_LR:
            raise ValueError(f"local_lr must be one of {LOCAL_LR}, got {self.local_lr!r}")
        if self.visitor_view not in VISITOR_VIEWS:
            raise ValueError(f"visitor_view must be one of {VISITOR_VIEWS} (\"average\": SkewScout "
                             f"scores what each averaging cost), got {self.visitor_view!r}")
        if self.iter_local < 1:
            raise ValueError(f"iter_local must be >= 1 (iterations between averaging), "
                             f"got {self.iter_local}")

    def schedule_problems(self, iterations: int, lr_phases: Sequence[range]) -> list[str]:
        """IterLocal must average within the run and divide its iterations, so that every
        averaging cycle (the last one included) is ``iter_local`` steps long."""
        k = self.iter_local
        if k > iterations:
            return [f"iter_local={k} never averages within {iterations} iterations (only the "
                    f"final averaging: the same run as iter_local={iterations}); give a divisor "
                    f"of the iterations <= {iterations}, e.g. {_divisor_near(iterations, k)}, "
                    f"or train a multiple of {k} iterations"]
        if iterations % k:
            return [f"iter_local={k} does not divide {iterations} iterations: the last cycle is "
                    f"{iterations % k} steps, not {k}; give a divisor of the iterations, e.g. "
                    f"{_divisor_near(iterations, k)}, or train a multiple of {k} iterations "
                    f"(e.g. {iterations + k - iterations % k})"]
        return []

    def init(self, params: torch.Tensor) -> FedAvgState:
        return FedAvgState(momentum=torch.zeros_like(params))

    def apply(self, state: FedAvgState, params: torch.Tensor, grads: torch.Tensor,
              ctx: StepContext, comm: Comm) -> StepStats:
        self.local_step(state, params, grads, ctx)
        return self.finish_step(state, params, ctx, comm)

    def finish_step(self, state: FedAvgState, params: torch.Tensor, ctx: StepContext,
                    comm: Comm) -> StepStats:
        """Count the step and average the models when the round is due (after the local step;
        subclasses with their own local step end with it too)."""
        state.steps_since_sync += 1
        # the run's last iteration always averages, as the authors' schedule (63,000 iterations,
        # a multiple of every IterLocal) does: the model scored is the averaged one, whatever
        # iter_local is or how SkewScout changed it
        if state.steps_since_sync < self.iter_local and not ctx.is_final:
            return silent_stats(params)
        if self.visitor_view == "average":
            state.before_average = params.detach().clone()
        stats = self.average(state, params, ctx, comm)
        state.steps_since_sync = 0
        return stats

    # The two halves of an iteration, the hooks FedAvg's variants (FedProx, FedOpt, SCAFFOLD)
    # override: the cycle (finish_step: when to average, the final averaging, the knob) stays.
    def step_size(self, ctx: StepContext) -> float:
        """The local step size: ``lr / N`` (per partition, the authors') or ``lr`` (global)."""
        return ctx.lr / ctx.num_partitions if self.local_lr == "per_partition" else ctx.lr

    def local_step(self, state: FedAvgState, params: torch.Tensor, grads: torch.Tensor,
                   ctx: StepContext) -> None:
        """One local momentum-SGD step of every partition (momentum kept across averaging)."""
        state.momentum.mul_(ctx.momentum).add_(decayed(grads, params, ctx))
        params.sub_(per_value_lr(state.momentum, ctx), alpha=self.step_size(ctx))

    def average(self, state: FedAvgState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        """End of a cycle: every model becomes the mean of the models (one dense message)."""
        params.copy_(comm.all_mean(params))
        return dense_stats(params, comm, synced=True)

    def round_ended(self, state: FedAvgState) -> bool:
        return state.steps_since_sync == 0

    def begin_round(self, state: FedAvgState, participants: Sequence[int]) -> None:
        state.momentum.zero_()

    def sit_out(self, state: FedAvgState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        synced = self.finish_step(state, params, ctx, comm).synced
        stats = silent_stats(params)   # a sampled-out partition sends and receives nothing
        stats.synced = synced
        return stats

    def views_just_agreed(self, state: FedAvgState) -> bool:
        # With iter_local=1 the models always agree: that is no accident of timing but the
        # truth (FedAvg is BSP), and the round measures it.
        return state.steps_since_sync == 0 and self.iter_local > 1

    def scores_averaging(self) -> bool:
        return self.visitor_view == "average"

    def before_average(self, state: FedAvgState) -> torch.Tensor | None:
        """The models just before the averaging this iteration ended with ([k, P]), or None
        (no averaging this iteration, or ``visitor_view`` is not ``"average"``)."""
        return state.before_average if state.steps_since_sync == 0 else None


def _divisor_near(iterations: int, k: int) -> int:
    """The divisor of ``iterations`` nearest to ``k`` (the larger on a tie)."""
    divisors = [d for d in range(1, iterations + 1) if iterations % d == 0]
    return min(divisors, key=lambda d: (abs(d - k), -d))
