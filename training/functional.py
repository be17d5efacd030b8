"""``k`` replicas of one model held as a flat ``[k, P]`` tensor, run together with torch.func.

The engine (docs/reference.md §3-4) keeps every local partition's parameters as a row of one tensor
so that algorithms see ``[k, P]`` and the forward/backward of all partitions can run in one
vectorised pass (``torch.func.vmap`` over ``functional_call``). BatchNorm running statistics are
stacked buffers passed as batched inputs, so each partition normalises with its own minibatch
statistics and updates its own running statistics in place, exactly as ``k`` separate models.
With :attr:`StackedModel.norm_frozen` (FixBN after its switch, training.engine) the BatchNorm
layers run in eval mode during training: each replica normalises with its running statistics
and leaves them unchanged, while the rest of the model (dropout) still trains.
GN-/BN-LeNet skip ``vmap``: :mod:`training.grouped` runs their replicas as one network with
channels grouped by replica (the same computation, without vmap's layout copies).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from training.algorithms.base import Comm
from training.grouped import grouped_logits, supports
from training.norm import batch_norm_names

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
    vmap pass for all replicas' gradients, else a loop over them.

    Whether vmap works for this module is decided once, before the first step
    (:meth:`_probe_vmap` on a 2-sample batch with copies of the buffers); after that no error
    switches engines: an error mid-step (e.g. CUDA out of memory) propagates.
    ``channels_last`` stores 4-D inputs channels-last; ``bf16`` runs forward/backward under
    bfloat16 autocast (parameters, gradients and updates stay float32).
    """

    def __init__(self, module: nn.Module, k: int, device: str | torch.device = "cpu",
                 vectorize: bool = True, *, channels_last: bool = False,
                 bf16: bool = False) -> None:
        self.module = module.to(device)
        self.k = k
        self.layout = ParamLayout.of(module)
        flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        self.params = flat.unsqueeze(0).repeat(k, 1).contiguous()
        self.buffers = {name: b.detach().unsqueeze(0).repeat(k, *([1] * b.dim())).contiguous()
                        for name, b in module.named_buffers()}
        self.vectorize = vectorize
        # LeNet-like modules run as one network with channels grouped by replica
        # (training.grouped): what vmap computes, without its layout copies
        self.grouped = supports(self.module)
        self.channels_last = channels_last
        self.bf16 = bf16
        self._probed = not vectorize or self.grouped
        # FixBN after its switch: BatchNorm normalises with (and keeps) its running statistics
        self.norm_frozen = False
        self._batch_norms = [m for m in self.module.modules() if isinstance(m, _BatchNorm)]

    @property
    def num_parameters(self) -> int:
        return self.layout.size

    def set_replicas(self, start: int, stop: int, module: nn.Module) -> None:
        """Rows ``start:stop`` become copies of ``module``'s weights and buffers (another run's
        initial model in a seed group); ``module`` has this stack's architecture."""
        if ParamLayout.of(module) != self.layout:
            raise ValueError("set_replicas needs a module of the stack's architecture")
        flat = torch.cat([p.detach().reshape(-1) for p in module.parameters()])
        self.params[start:stop] = flat.to(self.params.device)
        for name, buffer in module.named_buffers():
            self.buffers[name][start:stop] = buffer.detach().to(self.params.device)

    def rows(self, start: int, stop: int) -> StackedModel:
        """Replicas ``start:stop`` as a stack of their own that shares this one's memory and
        module (one run of a seed group, for evaluation)."""
        view = copy.copy(self)
        view.params = self.params[start:stop]
        view.buffers = {name: b[start:stop] for name, b in self.buffers.items()}
        view.k = stop - start
        return view

    def batch_norm_masks(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Which values belong to BatchNorm layers, as two bool masks on the CPU: ``[P]`` over
        the flat parameters, and ``[B]`` over the floating buffers in :attr:`buffers` order
        (the columns of ``Algorithm.share_buffers``)."""
        names = batch_norm_names(self.module)
        params = torch.zeros(self.layout.size, dtype=torch.bool)
        for name, shape, start in zip(self.layout.names, self.layout.shapes, self.layout.offsets,
                                      strict=True):
            params[start:start + shape.numel()] = name in names.params
        floating = [(n, b[0].numel()) for n, b in self.buffers.items() if b.is_floating_point()]
        buffers = torch.cat([torch.zeros(0, dtype=torch.bool)]
                            + [torch.full((size,), n in names.buffers, dtype=torch.bool)
                               for n, size in floating])
        return params, buffers

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

    def gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``[k, P]`` gradients of each replica's mean cross-entropy on its own batch.

        Runs in training mode (BatchNorm buffers update in place). Every parameter of every
        replica is its own autograd leaf, so backward never materialises ``[k, *shape]`` per
        parameter and replica; the grads are concatenated once at the end.
        """
        if not self._probed:
            self._probe_vmap(x, y)
        self._train_mode()
        if self.channels_last and x.dim() == 5:
            # each replica's [b, C, H, W] slice channels-last (NHWC strides)
            x = x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        with self._autocast():
            if self.vectorize and self.grouped:
                return self._grouped_gradients(x, y)
            if self.vectorize:
                return self._vmap_gradients(self.params, self.buffers, x, y)
            return self._loop_gradients(x, y)

    def _train_mode(self) -> None:
        """Training mode, BatchNorm layers excepted once their statistics are frozen."""
        self.module.train()
        if self.norm_frozen:
            for module in self._batch_norms:
                module.eval()

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.params.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _vmap_gradients(self, params: torch.Tensor, buffers: dict[str, torch.Tensor],
                        x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        views = {n: v.detach().requires_grad_() for n, v in self.layout.views(params).items()}
        logits = vmap(self._call, randomness="different")(views, buffers, x)
        return self._loss_gradients(logits, y, views)

    def _grouped_gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        views = {n: v.detach().requires_grad_() for n, v in self.layout.views(self.params).items()}
        logits = grouped_logits(self.module, views, self.buffers, x)
        return self._loss_gradients(logits, y, views)

    def _loss_gradients(self, logits: torch.Tensor, y: torch.Tensor,
                        views: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[k, P]`` gradients of each replica's mean loss from ``[k, b, classes]`` logits."""
        # Summing the per-replica mean losses leaves each replica's gradient its own.
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(),
                               reduction="sum") / y.shape[1]
        grads = torch.autograd.grad(loss, list(views.values()), allow_unused=True)
        return torch.cat([torch.zeros_like(v).flatten(1) if g is None else g.flatten(1)
                          for v, g in zip(views.values(), grads, strict=True)], dim=1)

    def _loop_gradients(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One forward/backward per replica on leaves of its own (views of row ``i`` detached):
        indexing ``[k, ...]`` leaves instead made backward zero-fill a full ``[k, *shape]``
        gradient per replica, O(k^2) per step."""
        out = torch.empty_like(self.params)
        for i in range(self.k):
            leaves = self.replica_leaves(i)
            logits = self._call(leaves, {n: b[i] for n, b in self.buffers.items()}, x[i])
            loss = F.cross_entropy(logits.float(), y[i])
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            torch.cat([torch.zeros_like(v).flatten() if g is None else g.flatten()
                       for v, g in zip(leaves.values(), grads, strict=True)], out=out[i])
        return out

    def replica_leaves(self, i: int) -> dict[str, torch.Tensor]:
        """Replica ``i``'s parameters as separate autograd leaves (detached views of its row)."""
        views = self.layout.views(self.params[i])
        return {n: v.detach().requires_grad_() for n, v in views.items()}

    def _probe_vmap(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Decide once whether vmap runs this module: a forward/backward of every replica on 2
        samples, with copies of the buffers (running statistics untouched) and the RNG state
        restored. Any error but running out of memory means "not vmappable"."""
        self._probed = True
        n = min(2, x.shape[1])
        buffers = {name: b.clone() for name, b in self.buffers.items()}
        devices = [self.params.device] if self.params.device.type == "cuda" else []
        self._train_mode()
        with torch.random.fork_rng(devices=devices):
            try:
                self._vmap_gradients(self.params, buffers, x[:, :n], y[:, :n])
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as error:  # noqa: BLE001 - any failure of the probe means "no vmap"
                log.warning("vmap cannot run this model (%s: %s); using the per-partition loop",
                            type(error).__name__, error)
                self.vectorize = False

    def _call(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, (params, buffers), (x,))

    @torch.no_grad()
    def predict(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                x: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Eval-mode predicted labels of one replica (given as views) on ``x``."""
        self.module.eval()
        device = self.params.device
        preds = [self._eval_logits(params, buffers, x[s:s + batch_size].to(device)).argmax(dim=1)
                 for s in range(0, len(x), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.empty(0, dtype=torch.long)

    def _eval_logits(self, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                     x: torch.Tensor) -> torch.Tensor:
        if not self.grouped:
            return self._call(params, buffers, x)
        # a stack of one: the grouped network's channels-last max pool and trimmed conv taps
        return grouped_logits(self.module, {n: p.unsqueeze(0) for n, p in params.items()},
                              {n: b.unsqueeze(0) for n, b in buffers.items()},
                              x.unsqueeze(0))[0]
