"""The training engine: one algorithm over ``k`` local partitions (REFERENCE.md §3-4).

In the one-device simulation ``k = N`` and ``comm`` is :class:`training.comm.LocalComm`; under
torch.distributed each process holds ``k = 1`` partition and a ``DistributedComm``: the same code.
Per iteration every local partition draws ``batch_size // N`` samples of its own data (in-memory
partitions are resident on the device and gathered there: :mod:`training.sampling`), the
gradients of all ``k`` replicas come from one ``vmap`` pass (``vectorize=True``) or a loop over
partitions, and the algorithm turns them into updates and traffic. When the algorithm
reports a sync the BatchNorm running statistics are averaged over partitions (REFERENCE.md §3).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from training.algorithms.base import Algorithm, Comm, StepContext, StepStats
from training.algorithms.sparse import dense_bytes
from training.comm import LocalComm, gather_partitions
from training.datasets import BatchSource, PartitionData
from training.evaluation import EvalResult, accuracy, evaluate
from training.functional import StackedModel
from training.sampling import stacked_batches

__all__ = ["BatchSource", "EvalResult", "PartitionData", "RunResult", "TrainConfig", "Trainer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 64_000
    batch_size: int = 100            # GLOBAL batch; each partition takes batch_size // N
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.5, 0.75)   # fractions of iterations (32K, 48K of 64K)
    lr_gamma: float = 0.1
    eval_every: int = 1000
    eval_batch_size: int = 500
    seed: int = 0
    device: str = "cpu"
    # True: all partitions' gradients in one vmap pass; False: a loop over partitions; None: vmap
    # on accelerators, the loop on CPU (where vmap's grouped convolutions measured slower for
    # 32x32 LeNet/ResNet-20; it pays for tiny models, e.g. digits: benchmarks/bench_simulation.py)
    vectorize: bool | None = None
    progress: bool = True            # tqdm bar in run()
    # CUDA speed options (benchmarks/bench_simulation.py): inputs in channels-last layout, and
    # forward/backward under bfloat16 autocast (parameters and updates stay float32)
    channels_last: bool = False
    bf16: bool = False

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "eval_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.bf16 and not self.device.startswith("cuda"):
            raise ValueError(f"bf16 autocast is a CUDA option; device is {self.device!r}: set "
                             "device='cuda' or bf16=False")
        if any(not 0 < m <= 1 for m in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of iterations in (0, 1], "
                             f"got {self.lr_milestones}")

    def lr_factor(self, iteration: int) -> float:
        """The step-decay factor at ``iteration`` (x ``lr_gamma`` at each milestone passed)."""
        passed = sum(iteration >= round(m * self.iterations) for m in self.lr_milestones)
        return self.lr_gamma ** passed


@dataclass
class RunResult:
    curve: list[tuple[int, float]]       # (iteration, mean accuracy over partitions)
    final: EvalResult
    bytes_sent: list[float]              # total per partition (all N)
    bytes_received: list[float]
    bytes_per_iteration: float           # mean over partitions of bytes sent per iteration
    bsp_bytes_per_iteration: float       # what BSP sends: 4 * P per partition per iteration
    wall_time_s: float
    iterations: int
    global_curve: list[tuple[int, float]] = field(default_factory=list)
    # (iteration, bytes sent so far, averaged over partitions) at each evaluation
    bytes_curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def relative_communication(self) -> float:
        """Bytes sent per iteration relative to BSP (BSP = 1)."""
        return self.bytes_per_iteration / self.bsp_bytes_per_iteration


class Trainer:
    """Runs one algorithm over k local partitions (k = N in simulation, 1 per process under
    torch.distributed), the same code for both engines."""

    def __init__(self, model_fn: Callable[[], nn.Module], algorithm: Algorithm,
                 train: Sequence[PartitionData | BatchSource], val: PartitionData,
                 config: TrainConfig, *, comm: Comm | None = None,
                 partition_ids: Sequence[int] | None = None,
                 callbacks: Sequence[Callable[[Trainer], None]] = ()) -> None:
        if not train:
            raise ValueError("train needs at least one partition")
        self.comm = comm if comm is not None else LocalComm(len(train))
        self.num_partitions = self.comm.num_partitions
        self.partition_ids = list(range(len(train)) if partition_ids is None else partition_ids)
        if len(self.partition_ids) != len(train):
            raise ValueError(f"{len(train)} local partitions but {len(self.partition_ids)} ids")
        self.local_batch = config.batch_size // self.num_partitions
        if self.local_batch < 1:
            raise ValueError(f"batch_size {config.batch_size} < {self.num_partitions} partitions")
        if len(val) < self.num_partitions:   # each partition evaluates on a 1/N shard of val
            raise ValueError(f"the validation set has {len(val)} samples, fewer than the "
                             f"{self.num_partitions} partitions that each evaluate on a 1/N "
                             "shard of it; give it more samples")
        self.algorithm, self.train_data, self.val, self.config = algorithm, list(train), val, config
        self.callbacks = list(callbacks)
        torch.manual_seed(config.seed)   # identical initial replicas in every process
        vectorize = (config.vectorize if config.vectorize is not None
                     else torch.device(config.device).type != "cpu")
        self.stack = StackedModel(model_fn(), len(train), config.device, vectorize,
                                  channels_last=config.channels_last, bf16=config.bf16)
        algorithm.bind_layers([shape.numel() for shape in self.stack.layout.shapes])
        self.state = algorithm.init(self.stack.params)
        # in-memory partitions live on the device and are gathered there (training.sampling)
        self._batches = stacked_batches(
            self.train_data, self.local_batch,
            [np.random.default_rng([config.seed, p]) for p in self.partition_ids], config.device)
        self.bytes_sent = torch.zeros(len(train), dtype=torch.float64)
        self.bytes_received = torch.zeros(len(train), dtype=torch.float64)
        self.iteration = 0

    @property
    def num_parameters(self) -> int:
        return self.stack.num_parameters

    def context(self) -> StepContext:
        cfg = self.config
        factor = cfg.lr_factor(self.iteration)
        return StepContext(iteration=self.iteration, lr=cfg.lr * factor, lr_factor=factor,
                           num_partitions=self.num_partitions, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay,
                           final_lr_factor=cfg.lr_factor(max(cfg.iterations - 1, 0)))

    def step(self) -> StepStats:
        """One iteration of every local partition."""
        x, y = next(self._batches)
        grads = self.stack.gradients(x, y)
        stats = self.algorithm.apply(self.state, self.stack.params, grads, self.context(),
                                     self.comm)
        if stats.synced:
            self.stack.average_buffers(self.comm)
        self.bytes_sent += stats.bytes_sent
        self.bytes_received += stats.bytes_received
        self.iteration += 1
        return stats

    def evaluate(self) -> EvalResult:
        """Each partition's model on its round-robin 1/N shard of val, and the global model."""
        return evaluate(self.stack, self.val, self.partition_ids, self.comm,
                        self.config.eval_batch_size, self.algorithm.has_global_model)

    def model_accuracy(self, model_index: int, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy of local model ``model_index`` on the given data."""
        return accuracy(self.stack, *self.stack.replica(model_index), PartitionData(x, y),
                        self.config.eval_batch_size)

    def model_payload(self, model_index: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Local model ``model_index`` as one flat tensor in ``dtype``, ready to send: its
        parameters, then its floating buffers (integer counters stay home)."""
        _, buffers = self.stack.replica(model_index)
        flat = [self.stack.params[model_index]]
        flat += [b.reshape(-1) for b in buffers.values() if b.is_floating_point()]
        return torch.cat([t.detach().to(dtype) for t in flat])

    def payload_accuracy(self, payload: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
        """Accuracy on the given data of a model received as :meth:`model_payload` (from any
        partition: every replica has the same layout)."""
        flat = payload.to(self.stack.params.device, self.stack.params.dtype)
        _, own = self.stack.replica(0)
        floats = {name: b for name, b in own.items() if b.is_floating_point()}
        sizes = [self.stack.num_parameters, *(b.numel() for b in floats.values())]
        if flat.numel() != sum(sizes):
            raise ValueError(f"a payload of {flat.numel()} values for a model of {sum(sizes)}")
        params, *values = flat.split(sizes)
        # integer counters stay the receiver's own (unused in eval)
        buffers = {**own, **{name: v.view_as(b).to(b.dtype)
                             for (name, b), v in zip(floats.items(), values, strict=True)}}
        return accuracy(self.stack, self.stack.layout.views(params), buffers, PartitionData(x, y),
                        self.config.eval_batch_size)

    def judged_payload(self, local_index: int, payload: torch.Tensor) -> torch.Tensor:
        """A model received as :meth:`model_payload`, as local model ``local_index`` judges it
        (``Algorithm.traveled_view`` on its parameters; its buffers as they came)."""
        n = self.stack.num_parameters
        visitor = payload[:n].to(self.stack.params.dtype)
        view = self.algorithm.traveled_view(self.state, local_index, visitor, self.context())
        if view is visitor:
            return payload
        return torch.cat([view, payload[n:].to(view.dtype)])

    def train_sample(self, local_index: int, n: int, seed: int) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """``n`` random training samples of local partition ``local_index`` (fixed by seed; all
        of them when it has fewer). A streamed partition gives the next ``n`` of a pass over its
        stream (``IterableBatchSource.take``), in the order its loader decides."""
        source = self.train_data[local_index]
        if isinstance(source, PartitionData):
            return next(iter(source.batches(min(n, len(source)), np.random.default_rng(seed))))
        return source.take(n)

    def add_bytes(self, local_index: int, sent: float, received: float) -> None:
        """Count extra traffic of a local partition (e.g. SkewScout's traveling models)."""
        self.bytes_sent[local_index] += sent
        self.bytes_received[local_index] += received

    def partition_state_dict(self, local_index: int) -> dict[str, torch.Tensor]:
        """A copy of local partition ``local_index``'s parameters and buffers."""
        return self.stack.state_dict(local_index)

    def run(self) -> RunResult:
        """Train to ``config.iterations``, evaluating every ``eval_every`` and at the end."""
        cfg, curve, global_curve, sent_at = self.config, [], [], []
        final: EvalResult | None = None
        start = time.perf_counter()
        bar = tqdm(total=cfg.iterations, initial=self.iteration, disable=not cfg.progress,
                   desc=self.algorithm.name, leave=False)
        while self.iteration < cfg.iterations:
            self.step()
            for callback in self.callbacks:
                callback(self)
            bar.update(1)
            if self.iteration % cfg.eval_every == 0 or self.iteration == cfg.iterations:
                final = self.evaluate()
                curve.append((self.iteration, final.mean))
                sent_at.append(self.bytes_sent.clone())
                if final.global_acc is not None:
                    global_curve.append((self.iteration, final.global_acc))
                bar.set_postfix(acc=f"{final.mean:.3f}")
                log.info("%s iteration %d: mean accuracy %.4f", self.algorithm.name,
                         self.iteration, final.mean)
        bar.close()
        if final is None:   # nothing left to train
            final = self.evaluate()
        return self._result(curve, global_curve, sent_at, final, time.perf_counter() - start)

    def _result(self, curve: list[tuple[int, float]], global_curve: list[tuple[int, float]],
                sent_at: list[torch.Tensor], final: EvalResult, wall_time_s: float) -> RunResult:
        sent = gather_partitions(self.bytes_sent, self.partition_ids, self.comm)
        # one collective for the whole curve: rows are local partitions, columns evaluations
        totals = self.comm.all_sum(torch.stack(sent_at, dim=1))[0] if sent_at else []
        received = gather_partitions(self.bytes_received, self.partition_ids, self.comm)
        iterations = max(self.iteration, 1)
        return RunResult(
            curve=curve, final=final, bytes_sent=sent, bytes_received=received,
            bytes_per_iteration=sum(sent) / len(sent) / iterations,
            bsp_bytes_per_iteration=dense_bytes(self.num_parameters),
            wall_time_s=wall_time_s, iterations=self.iteration, global_curve=global_curve,
            bytes_curve=[(i, float(t) / self.num_partitions)
                         for (i, _), t in zip(curve, totals, strict=True)])

