"""SCAFFOLD (Karimireddy et al., "SCAFFOLD: Stochastic Controlled Averaging for Federated
Learning", ICML 2020, Algorithm 1 with option II control variates).

The server holds the global model ``x`` and a control variate ``c``; each partition ``i`` holds
its own ``c_i``; all start at 0, as in the paper. In a round of ``K`` local steps of step size
``eta_l`` each partition corrects its gradient by the drift estimate ``c - c_i``:
``y_i <- y_i - eta_l * (g_i + c - c_i)``. At the round's end (every ``iter_local`` steps, and at
the run's last iteration, as FedAvg) it updates ``c_i+ = c_i - c + (x - y_i) / (K * eta_l)`` and
sends ``dy_i = y_i - x`` and ``dc_i = c_i+ - c_i``; then ``x <- x + global_lr * mean_i(dy_i)``,
``c <- c + 1/N * sum_i(dc_i)`` (the mean with every partition; ``|S|/N`` times the
participants' mean under partial participation), and every partition continues from ``x``. The
message is a model and a control variate: 2 x dense (8 B per parameter), twice FedAvg's.

Momentum (the run's SGD momentum, kept across rounds as in FedAvg) acts on the gradient only:
``m_i <- momentum * m_i + g_i`` and the step is ``eta_l * (m_i + c - c_i)``. Option II then
makes ``c_i`` the round's mean of ``m_i``, in the units the step uses, so the correction stays
``c - c_i`` whatever the momentum (inside the velocity it would be amplified by it); with
momentum 0 this is the paper's algorithm exactly. When the step size changes within a round (a
learning-rate decay, per-layer multipliers) ``K * eta_l`` is the sum of the steps each value
took. ``local_lr`` is FedAvg's (``lr / N`` per partition by default).

Partial participation (``TrainConfig.participation``): a round's participants start from ``x``
with fresh momentum and their own ``c_i``, kept by partition id between their rounds (0 before
the first); a sampled-out process (torch.distributed) joins the averaging adding nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from training.algorithms.base import (
    Comm,
    StepContext,
    StepStats,
    per_value_lr,
    register_algorithm,
)
from training.algorithms.fedavg import FedAvg, FedAvgState
from training.algorithms.traffic import dense_stats


@dataclass(kw_only=True)
class ScaffoldState(FedAvgState):
    anchor: torch.Tensor      # [k, P]: x, the global model at the round's start
    control: torch.Tensor     # [k, P]: c (rows identical)
    local_control: torch.Tensor   # [k, P]: c_i
    step_sum: float = 0.0     # sum of eta_l over the round's steps (K * eta_l at a constant lr)
    # partial participation: the partition of each row this round (None: row i is partition i),
    # every c_i kept by partition id between its rounds, and whether this process sits out
    partitions: Sequence[int] | None = None
    kept_controls: dict[int, torch.Tensor] = field(default_factory=dict)
    sitting_out: bool = False


@register_algorithm
class Scaffold(FedAvg):
    name = "scaffold"
    supports_participation: ClassVar[bool] = True

    def __init__(self, iter_local: int = 50, global_lr: float = 1.0,
                 local_lr: str = "per_partition") -> None:
        self.global_lr = float(global_lr)
        super().__init__(iter_local=iter_local, local_lr=local_lr)

    def validate(self) -> None:
        super().validate()
        if not self.global_lr > 0:
            raise ValueError(f"global_lr must be > 0 (the server's step on the mean model "
                             f"change; 1 is the paper's default), got {self.global_lr}")

    def init(self, params: torch.Tensor) -> ScaffoldState:
        zeros = torch.zeros_like(params)
        return ScaffoldState(**vars(super().init(params)), anchor=params.clone(),
                             control=zeros, local_control=zeros.clone())

    def local_step(self, state: ScaffoldState, params: torch.Tensor, grads: torch.Tensor,
                   ctx: StepContext) -> None:
        state.sitting_out = False
        super().local_step(state, params, grads, ctx)        # y -= eta_l * m
        eta = self.step_size(ctx)
        params.sub_(per_value_lr(state.control - state.local_control, ctx), alpha=eta)
        state.step_sum += eta

    def average(self, state: ScaffoldState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        model_delta = params - state.anchor                   # dy_i = y_i - x
        if state.sitting_out:     # a sampled-out process: nothing to add, c_i stays as it is
            control_delta = torch.zeros_like(params)
        else:
            steps = torch.full_like(params[:1], state.step_sum)
            if ctx.lr_mult is not None:   # each value's steps were eta_l * lr_mult (never 0)
                steps = steps * ctx.lr_mult
            # option II: c_i+ - c_i = (x - y_i) / (K eta_l) - c
            control_delta = model_delta.div(steps).neg_().sub_(state.control)
        # x moves by the participants' mean dy_i (all of them without sampling), c by
        # 1/N of their sum dc_i: |S|/N times their mean, the paper's rule (the mean when S = N)
        mean_model = comm.all_mean(model_delta)
        state.control.add_(comm.all_sum(control_delta), alpha=1.0 / ctx.num_partitions)
        state.local_control.add_(control_delta)
        params.copy_(state.anchor.add_(mean_model, alpha=self.global_lr))
        state.step_sum = 0.0
        if state.partitions is not None and not state.sitting_out:
            for row, partition in enumerate(state.partitions):
                state.kept_controls[partition] = state.local_control[row].clone()
        model = dense_stats(params, comm, synced=True)
        return model + model          # a model delta and a control-variate delta, dense each

    # Partial participation (docs/engine.md): participants start from x with fresh momentum
    # (FedAvg's rule) and their own c_i, kept by partition id (0 before their first round)
    def begin_round(self, state: ScaffoldState, participants: Sequence[int]) -> None:
        state.momentum.zero_()
        for row, partition in enumerate(participants):
            kept = state.kept_controls.get(partition)
            state.local_control[row] = 0.0 if kept is None else kept
        state.partitions = list(participants)

    def sit_out(self, state: ScaffoldState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        state.sitting_out = True
        return super().sit_out(state, params, ctx, comm)   # type: ignore[misc]
