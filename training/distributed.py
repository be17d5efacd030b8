"""The torch.distributed engine: one process per partition (docs/reference.md §3-4).

Each process (launched by ``torchrun``; gloo on CPU, NCCL on GPU) holds one partition and runs the
same :class:`training.engine.Trainer` as the one-device simulation, with ``k = 1`` local partition,
``partition_ids=[rank]`` and a :class:`DistributedComm`. Algorithms only talk through ``Comm``, so
BSP, Gaia, FedAvg and DGC run unchanged; the Trainer seeds the model from ``config.seed`` (identical
replicas everywhere) and draws partition ``rank``'s batches from the same ``[seed, rank]`` stream
as the simulation, so both engines compute the same run (:func:`local_trainer` fails fast if
the processes built different initial models). Validation follows the paper's protocol:
each rank evaluates its model on its round-robin shard and the per-partition accuracies are
gathered with an all-reduce.

Communication through ``DistributedComm`` is dense (a ``SUM`` all-reduce): byte counts are the
algorithms' own accounting (sparse values + indices), not what gloo/NCCL put on the wire.
SkewScout's traveling models go point to point between two processes
(:meth:`DistributedComm.exchange`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from training.algorithms.base import Algorithm
from training.datasets import BatchSource, PartitionData
from training.engine import RunResult, TrainConfig, Trainer

__all__ = ["DistributedComm", "ProcessInfo", "distributed_trainer", "free_port",
           "init_distributed", "launch_local", "local_trainer", "run_distributed"]

log = logging.getLogger(__name__)


class DistributedComm:
    """The :class:`~training.algorithms.base.Comm` protocol over a torch.distributed group.

    This process holds one partition, so every tensor has a leading axis of 1; the reduction over
    all ``num_partitions`` processes is an all-reduce ``SUM``. Tensors are reduced on the
    backend's device (NCCL needs CUDA tensors) and returned where they came from, as new tensors.
    """

    def __init__(self, group: dist.ProcessGroup | None = None,
                 device: str | torch.device | None = None) -> None:
        if not dist.is_initialized():
            raise RuntimeError("torch.distributed is not initialised; call init_distributed() "
                               "(or launch with torchrun) first")
        self.group = group
        self.num_partitions = dist.get_world_size(group)
        self.device = torch.device(device if device is not None else _backend_device(group))

    def all_sum(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise ValueError(f"each process holds one partition; got a leading axis of "
                             f"{x.shape[0]}")
        out = x.to(self.device, copy=True).contiguous()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=self.group)
        return out.to(x.device)

    def all_mean(self, x: torch.Tensor) -> torch.Tensor:
        return self.all_sum(x) / self.num_partitions

    def exchange(self, outgoing: Sequence[tuple[int, torch.Tensor]],
                 incoming: Sequence[tuple[int, torch.Tensor]]) -> None:
        """Point-to-point: send each ``(partition, tensor)`` of ``outgoing`` to that partition's
        process and fill each tensor of ``incoming`` from its partition's process (SkewScout's
        traveling models). Only the processes named take part; the peers must mirror the call.
        (NCCL allows a batch over a subset of ranks only after a first collective over the
        group; the Trainer's start-up check and training's all-reduces come first.)"""
        def peer(partition: int) -> int:
            return partition if self.group is None else dist.get_global_rank(self.group,
                                                                              partition)

        sends = [t.to(self.device).contiguous() for _, t in outgoing]
        recvs = [torch.empty_like(t, device=self.device) for _, t in incoming]
        ops = ([dist.P2POp(dist.isend, t, peer(p), self.group)
                for (p, _), t in zip(outgoing, sends, strict=True)]
               + [dist.P2POp(dist.irecv, t, peer(p), self.group)
                  for (p, _), t in zip(incoming, recvs, strict=True)])
        for request in dist.batch_isend_irecv(ops) if ops else []:
            request.wait()
        for (_, into), got in zip(incoming, recvs, strict=True):
            into.copy_(got)


@dataclass(frozen=True)
class ProcessInfo:
    """Where this process sits: its rank (= partition id), the world size, its device."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str


def init_distributed(backend: str | None = None) -> ProcessInfo:
    """Join the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ...). ``backend=None`` picks NCCL when CUDA is available, else gloo.

    Idempotent: an already initialised group is reused.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if v not in os.environ]
        if missing:
            raise RuntimeError(f"environment lacks {', '.join(missing)}: launch with "
                               "`torchrun --nproc_per_node=N -m pipelines.train_distributed ...`")
        backend = backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return ProcessInfo(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(),
                       _backend_device())


def _backend_device(group: dist.ProcessGroup | None = None) -> str:
    """Where the group's collectives run: this process's GPU under NCCL, else the CPU."""
    return f"cuda:{torch.cuda.current_device()}" if dist.get_backend(group) == "nccl" else "cpu"


def distributed_trainer(model_fn: Callable[[], nn.Module], algorithm: Algorithm,
                        partitions: Sequence[PartitionData | BatchSource], val: PartitionData,
                        config: TrainConfig, *,
                        callbacks: Sequence[Callable[[Trainer], None]] = ()) -> Trainer:
    """This process's Trainer over partition ``rank`` of ``partitions`` (one per process)."""
    world = dist.get_world_size()
    if len(partitions) != world:
        raise ValueError(f"{len(partitions)} partitions but {world} processes: launch one "
                         f"process per partition (torchrun --nproc_per_node={len(partitions)})")
    return local_trainer(model_fn, algorithm, partitions[dist.get_rank()], val, config,
                         callbacks=callbacks)


def local_trainer(model_fn: Callable[[], nn.Module], algorithm: Algorithm,
                  partition: PartitionData | BatchSource, val: PartitionData, config: TrainConfig,
                  *, callbacks: Sequence[Callable[[Trainer], None]] = ()) -> Trainer:
    """The Trainer of this rank given only its own partition's data (which is all it needs).

    Under NCCL a CPU ``config.device`` becomes this process's GPU; only rank 0 shows a
    progress bar.
    """
    if config.device == "cpu":
        config = replace(config, device=_backend_device())
    config = replace(config, progress=config.progress and dist.get_rank() == 0)
    trainer = Trainer(model_fn, algorithm, [partition], val, config, comm=DistributedComm(),
                      partition_ids=[dist.get_rank()], callbacks=callbacks)
    _check_same_start(trainer)
    return trainer


def _check_same_start(trainer: Trainer) -> None:
    """Fail fast when the processes built different initial models (all start from one)."""
    fingerprint = trainer.stack.params.double().sum().reshape(1, 1)
    both = torch.cat([fingerprint, -fingerprint], dim=1).to(trainer.comm.device)
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    if both[0, 0] != -both[0, 1]:
        raise RuntimeError("the processes built different initial models; model_fn must be "
                           "deterministic under torch.manual_seed(config.seed)")


def run_distributed(model_fn: Callable[[], nn.Module], algorithm: Algorithm,
                    partitions: Sequence[PartitionData | BatchSource], val: PartitionData,
                    config: TrainConfig, *,
                    callbacks: Sequence[Callable[[Trainer], None]] = ()) -> RunResult:
    """Train this process's partition to ``config.iterations``; every rank gets the same
    :class:`~training.engine.RunResult` (accuracies and bytes gathered over all partitions)."""
    return distributed_trainer(model_fn, algorithm, partitions, val, config,
                               callbacks=callbacks).run()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for a local rendezvous)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_local(fn: Callable[..., None], world_size: int, args: tuple = (), *,
                 backend: str = "gloo", threads_per_process: int | None = 1) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` fresh processes joined in a process group on
    127.0.0.1 (what torchrun does on one machine; for tests and benchmarks).

    ``fn`` must be importable (module level). Results travel back through files or the
    process group. Raises if any process fails.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    mp.start_processes(_local_worker, args=(fn, world_size, free_port(), backend,
                                            threads_per_process, args),
                       nprocs=world_size, join=True, start_method="spawn")


def _local_worker(rank: int, fn: Callable[..., None], world_size: int, port: int, backend: str,
                  threads: int | None, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if threads is not None:
        torch.set_num_threads(threads)
    init_distributed(backend)
    try:
        fn(rank, *args)
    finally:
        if dist.is_initialized():   # fn may have torn the group down itself
            dist.destroy_process_group()
