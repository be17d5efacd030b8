"""The torch.distributed engine: one process per partition (docs/reference.md §3-4).

Each process (launched by ``torchrun``; gloo on CPU, NCCL with one GPU per rank, gloo when
ranks share GPUs: :func:`plan_device`) holds one partition and runs the
same :class:`training.engine.Trainer` as the one-device simulation, with ``k = 1`` local partition,
``partition_ids=[rank]`` and a :class:`DistributedComm`. Algorithms only talk through ``Comm``, so
BSP, Gaia, FedAvg and DGC run unchanged; the Trainer seeds the model from ``config.seed`` (identical
replicas everywhere) and draws partition ``rank``'s batches from the same ``[seed, rank]`` stream
as the simulation, so both engines compute the same run (:func:`local_trainer` fails fast if
the processes built different initial models); FedBN's BatchNorm masks and FixBN's switch come
from that Trainer too, so they run here unchanged. Validation follows the paper's protocol:
each rank evaluates its model on its round-robin shard and the per-partition accuracies are
gathered with an all-reduce.

Communication through ``DistributedComm`` is dense (a ``SUM`` all-reduce): byte counts are the
algorithms' own accounting (sparse values + indices), not what gloo/NCCL put on the wire.
SkewScout's traveling models go point to point between two processes
(:meth:`DistributedComm.exchange`).

Partial participation (``TrainConfig.participation``, training.participation) runs here too: every
rank draws the same seeded sample each round; a sampled-out rank does no forward/backward and
joins the round's averaging with weight 0 (``Algorithm.sit_out``), so both engines compute the
same run.
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

__all__ = ["DevicePlan", "DistributedComm", "ProcessInfo", "distributed_trainer", "free_port",
           "init_distributed", "launch_local", "local_trainer", "plan_device", "process_device",
           "run_distributed"]

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


@dataclass(frozen=True)
class DevicePlan:
    """The backend of the process group and the device this process computes on."""

    backend: str
    device: str


def plan_device(local_rank: int, local_world_size: int, cuda_count: int,
                backend: str | None = None) -> DevicePlan:
    """Map this machine's ranks onto its visible GPUs (a pure function: testable anywhere).

    - no GPU: gloo on the CPU;
    - at least one GPU per rank: NCCL, rank ``r`` on ``cuda:r``;
    - more ranks than GPUs: gloo, rank ``r`` on ``cuda:(r % cuda_count)`` (several ranks share a
      GPU; NCCL refuses two ranks on one GPU, so collectives go through the CPU).

    An explicit ``backend="gloo"`` keeps the old meaning (every rank on the CPU);
    ``backend="nccl"`` with more ranks than GPUs, or without a GPU, is an error.
    """
    if not 0 <= local_rank < local_world_size:
        raise ValueError(f"local rank {local_rank} outside 0..{local_world_size - 1}")
    if backend not in (None, "gloo", "nccl"):
        raise ValueError(f"backend must be 'gloo', 'nccl' or None (auto), got {backend!r}")
    if backend == "gloo" or (backend is None and cuda_count == 0):
        return DevicePlan("gloo", "cpu")
    if local_world_size <= cuda_count:
        return DevicePlan(backend or "nccl", f"cuda:{local_rank}")
    if backend == "nccl":
        raise ValueError(f"NCCL needs one GPU per rank: {local_world_size} ranks on this machine "
                         f"but {cuda_count} GPU(s); use backend=None (gloo, ranks share GPUs) "
                         f"or launch at most {cuda_count} ranks per machine")
    return DevicePlan("gloo", f"cuda:{local_rank % cuda_count}")


_PROCESS_DEVICE: str | None = None   # set by init_distributed: where this rank computes


def init_distributed(backend: str | None = None) -> ProcessInfo:
    """Join the default process group from torchrun's environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ...). ``backend=None`` maps ranks to GPUs with :func:`plan_device` (NCCL
    when every rank of this machine gets its own GPU, gloo with shared GPUs otherwise, gloo on
    the CPU without CUDA).

    Idempotent: an already initialised group is reused.
    """
    global _PROCESS_DEVICE
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
                   if v not in os.environ]
        if missing:
            raise RuntimeError(f"environment lacks {', '.join(missing)}: launch with "
                               "`torchrun --nproc_per_node=N -m pipelines.train_distributed ...`")
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        plan = plan_device(local_rank, local_world, cuda_count, backend)
        if plan.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(plan.device))
        log.info("rank %s: backend %s on %s", os.environ["RANK"], plan.backend, plan.device)
        dist.init_process_group(plan.backend)
        _PROCESS_DEVICE = plan.device
    return ProcessInfo(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(),
                       process_device())


def process_device() -> str:
    """Where this rank computes: its planned device, else the collectives' device."""
    return _PROCESS_DEVICE if _PROCESS_DEVICE is not None else _backend_device()


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

    A CPU ``config.device`` becomes this process's planned device (its GPU, or the GPU it
    shares, when :func:`init_distributed` chose one); only rank 0 shows a progress bar.
    """
    if config.device == "cpu":
        config = replace(config, device=process_device())
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
                 backend: str | None = "gloo", threads_per_process: int | None = 1) -> None:
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


def _local_worker(rank: int, fn: Callable[..., None], world_size: int, port: int,
                  backend: str | None,
                  threads: int | None, args: tuple) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    if threads is not None:
        torch.set_num_threads(threads)
    init_distributed(backend)
    try:
        fn(rank, *args)
    finally:
        if dist.is_initialized():   # fn may have torn the group down itself
            dist.destroy_process_group()
