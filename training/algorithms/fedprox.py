"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

FedAvg (:mod:`training.algorithms.fedavg`) whose partitions each minimise their loss plus the
proximal term ``mu/2 * ||w - w_global||^2``, ``w_global`` being the model of the last averaging
(the round's start): every local gradient gets ``mu * (w - w_global)`` before weight decay and
momentum. It pulls the local models towards the global one while they train apart, the remedy
Li et al. give for skewed partitions. ``mu = 0`` is FedAvg, bit for bit. Everything else
(averaging every ``iter_local`` steps and at the run's last iteration, the knob, the local
learning rate, the bytes: one dense model per averaging) is FedAvg's, inherited.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import Comm, StepContext, StepStats, register_algorithm
from training.algorithms.fedavg import FedAvg, FedAvgState


@dataclass(kw_only=True)
class FedProxState(FedAvgState):
    anchor: torch.Tensor     # [k, P]: the global model of the last averaging (w_global)


@register_algorithm
class FedProx(FedAvg):
    name = "fedprox"

    def __init__(self, mu: float = 0.01, iter_local: int = 50,
                 local_lr: str = "per_partition") -> None:
        self.mu = float(mu)
        super().__init__(iter_local=iter_local, local_lr=local_lr)

    def validate(self) -> None:
        super().validate()
        if not self.mu >= 0:
            raise ValueError(f"mu must be >= 0 (the proximal term's weight; 0 is FedAvg, Li et "
                             f"al. use 0.001-1), got {self.mu}")

    def init(self, params: torch.Tensor) -> FedProxState:
        return FedProxState(**vars(super().init(params)), anchor=params.clone())

    def local_step(self, state: FedProxState, params: torch.Tensor, grads: torch.Tensor,
                   ctx: StepContext) -> None:
        if self.mu:   # mu = 0 adds nothing: FedAvg exactly
            grads = grads.add(params - state.anchor, alpha=self.mu)
        super().local_step(state, params, grads, ctx)

    def average(self, state: FedProxState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        stats = super().average(state, params, ctx, comm)
        state.anchor.copy_(params)
        return stats
