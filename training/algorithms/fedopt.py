"""A server optimiser for FedAvg: FedAvgM / FedOpt with server SGD (Hsu et al. 2019, "Measuring
the Effects of Non-Identical Data Distribution"; Reddi et al., "Adaptive Federated
Optimization", ICLR 2021), and DiLoCo's outer step (Douillard et al. 2023) as a configuration.

Partitions train as in FedAvg (:mod:`training.algorithms.fedavg`). At each averaging the server
holds the global model ``x`` of the last averaging and treats ``delta = x - mean_k(w_k)`` as a
pseudo-gradient: ``v <- server_momentum * v + delta``, then ``x <- x - server_lr * v``, or with
``nesterov`` ``x <- x - server_lr * (delta + server_momentum * v)`` (PyTorch's SGD rule). Every
partition continues from the new ``x``. ``server_lr = 1, server_momentum = 0`` is FedAvg, bit for
bit; FedAvgM is ``server_momentum > 0``; DiLoCo's outer Nesterov is ``server_lr = 0.7,
server_momentum = 0.9, nesterov = true`` (with ``iter_local`` its H inner steps), the
defaults. The server state (``x``, ``v``) is identical on every partition, so the message is
FedAvg's: one dense model per averaging. BatchNorm running statistics are averaged plainly
(they are no gradient).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import Comm, StepContext, StepStats, register_algorithm
from training.algorithms.fedavg import FedAvg, FedAvgState


@dataclass(kw_only=True)
class FedOptState(FedAvgState):
    anchor: torch.Tensor            # [k, P]: x, the global model of the last averaging
    server_velocity: torch.Tensor   # [k, P]: v (rows identical)


@register_algorithm
class FedOpt(FedAvg):
    name = "fedopt"

    # the defaults are DiLoCo's outer step (FedAvgM: nesterov=False; FedAvg: 1, 0)
    def __init__(self, iter_local: int = 50, server_lr: float = 0.7,
                 server_momentum: float = 0.9, nesterov: bool = True,
                 local_lr: str = "per_partition") -> None:
        self.server_lr = float(server_lr)
        self.server_momentum = float(server_momentum)
        self.nesterov = nesterov
        super().__init__(iter_local=iter_local, local_lr=local_lr)

    def validate(self) -> None:
        super().validate()
        if not self.server_lr > 0:
            raise ValueError(f"server_lr must be > 0 (1 steps to the partitions' mean; DiLoCo "
                             f"uses 0.7), got {self.server_lr}")
        if not 0 <= self.server_momentum < 1:
            raise ValueError(f"server_momentum must be in [0, 1) (0: none; FedAvgM and DiLoCo "
                             f"use 0.9), got {self.server_momentum}")
        if not isinstance(self.nesterov, bool):   # bool("false") would be True
            raise ValueError(f"nesterov must be true or false, got {self.nesterov!r}")

    def init(self, params: torch.Tensor) -> FedOptState:
        return FedOptState(**vars(super().init(params)), anchor=params.clone(),
                           server_velocity=torch.zeros_like(params))

    def average(self, state: FedOptState, params: torch.Tensor, ctx: StepContext,
                comm: Comm) -> StepStats:
        stats = super().average(state, params, ctx, comm)    # params: mean_k(w_k)
        delta = state.anchor - params
        # x - lr * v written as mean + (1 - lr) * delta - lr * m * v_ref (v_ref: v before this
        # step; with Nesterov, v after it), so that server_lr = 1 and server_momentum = 0 leave
        # the mean itself: FedAvg bit for bit
        lr, m = self.server_lr, self.server_momentum
        if not self.nesterov:
            params.sub_(state.server_velocity, alpha=lr * m)
        state.server_velocity.mul_(m).add_(delta)
        if self.nesterov:
            params.sub_(state.server_velocity, alpha=lr * m)
        params.add_(delta, alpha=1.0 - lr)
        state.anchor.copy_(params)
        return stats
