"""``k`` replicas of one model held as a flat ``[k, P]`` tensor, run together with torch.func.

The engine (docs/reference.md §3-4) keeps every local partition's parameters as a row of one tensor
so that algorithms see ``[k, P]`` and the forward/backward of all partitions can run in one
vectorised pass (``torch.func.vmap`` over ``functional_call``). BatchNorm running statistics are
stacked buffers passed as batched inputs, so each partition normalises with its own minibatch
statistics and updates its own running statistics in place, exactly as ``k`` separate models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from training.algorithms.base import Comm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter lives in the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    offsets: tuple[int, ...]
    size: int   # P

    @classmethod
    def of(cls, module: nn.Module) -> ParamLayout:
        names, shapes, offsets, offset = [], [], [], 0
        for name, param in module.named_parameters():
            names.append(name)
            shapes.append(param.shape)
            offsets.append(offset)
            offset += param.numel()
        return cls(tuple(names), tuple(shapes), tuple(offsets), offset)

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``flat`` is ``[..., P]``; returns ``{name: [..., *shape]}`` views sharing its memory."""
        lead = flat.shape[:-1]
        return {name: flat[..., start:start + shape.numel()].view(*lead, *shape)
                for name, shape, start in zip(self.names, self.shapes, self.offsets, strict=True)}


class StackedModel:
    """``k`` replicas of ``module`` (all starting from its current weights); ``vectorize``: one
    vmap pass for all replicas' gradients, else a loop over them."""

    def __init__(self, module: nn.Module, k: int, device: str | torch.device = "cpu",
                 vectorize: bool = True) -> None:
        self.module = module.to(device)
        self.k = k
        self.layout = ParamLayout.of(module)
        flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        self.params = flat.unsqueeze(0).repeat(k, 1).contiguous()
        self.buffers = {name: b.detach().unsqueeze(0).repeat(k, *([1] * b.dim())).contiguous()
                        for name, b in module.named_buffers()}
        self.vectorize = vectorize

    @property
    def num_parameters(self) -> int:
        return self.layout.size

    def replica(self, i: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Views of replica ``i``'s parameters and buffers (writes go to the stack)."""
        return self.layout.views(self.params[i]), {n: b[i] for n, b in self.buffers.items()}

    def state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """A copy of replica ``i`` with the keys ``module.load_state_dict`` expects."""
        params, buffers = self.replica(i)
        tensors = {**params, **buffers}
        return {name: tensors[name].detach().clone() for name in self.module.state_dict()}

    def mean_replica(self, comm: Comm) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The average of all replicas (over every partition, through ``comm``)."""
        params = self.layout.views(comm.all_mean(self.params)[0].clone())
        buffers = {n: (comm.all_mean(b)[0].clone() if b.is_floating_point() else b[0].clone())
                   for n, b in self.buffers.items()}
        return params, buffers

    def average_buffers(self, comm: Comm) -> None:
        """Replace every replica's floating-point buffers (BN running stats) by their mean."""
        for buffer in self.buffers.values():
            if buffer.is_floating_point():
                buffer.copy_(comm.all_mean(buffer))

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[k, P]`` gradients of each replica's mean cross-entropy on its own batch.

        Runs in training mode (BatchNorm buffers update in place). Each parameter is its own
        autograd leaf (a view of the stack), so backward never materialises ``[k, P]`` per
        parameter; the grads are concatenated once at the end.
        """
        views = {n: v.detach().requires_grad_() for n, v in self.layout.views(self.params).items()}
        logits = self._forward_train(views, x)
        # Summing the per-replica mean losses leaves each replica's gradient its own.
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / y.shape[1]
        grads = torch.autograd.grad(loss, list(views.values()), allow_unused=True)
        return torch.cat([torch.zeros_like(v).flatten(1) if g is None else g.flatten(1)
                          for v, g in zip(views.values(), grads, strict=True)], dim=1)

    def _forward_train(self, views: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        self.module.train()
        if self.vectorize:
            try:
                return vmap(self._call, randomness="different")(views, self.buffers, x)
            except RuntimeError as error:   # an op without a batching rule: loop from now on
                log.warning("vmap failed (%s); falling back to the per-partition loop", error)
                self.vectorize = False
        return torch.stack([self._call({n: v[i] for n, v in views.items()},
                                       {n: b[i] for n, b in self.buffers.items()}, x[i])
                            for i in range(self.k)])

    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    @torch.no_grad()
    def predict(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Eval-mode predicted labels of one replica (given as views) on ``x``."""
        self.module.eval()
        device = self.params.device
        preds = [self._call(params, buffers, x[s:s + batch_size].to(device)).argmax(dim=1)
                 for s in range(0, len(x), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)
