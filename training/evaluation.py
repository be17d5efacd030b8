"""The paper's validation protocol (docs/reference.md §3).

Partition ``i`` (of ``N``) evaluates its own model on the round-robin shard ``val[i::N]`` of the
label-balanced validation set; the reported accuracy is the mean over partitions. Where the
algorithm has a global model (the replicas' mean), it is also evaluated on the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from training.algorithms.base import Comm
from training.comm import gather_partitions
from training.datasets import PartitionData
from training.functional import StackedModel


@dataclass(frozen=True)
class EvalResult:
    per_partition: list[float]     # accuracy of partition i's model on its shard, all N partitions
    mean: float                    # the paper's number: mean over partitions
    global_acc: float | None       # the averaged model on the whole set, where one exists


def round_robin_shard(val: PartitionData, partition_id: int, num_partitions: int) -> PartitionData:
    return PartitionData(val.x[partition_id::num_partitions], val.y[partition_id::num_partitions])


def accuracy(stack: StackedModel, params: dict[str, torch.Tensor],
             buffers: dict[str, torch.Tensor], data: PartitionData, batch_size: int) -> float:
    if len(data) == 0:
        raise ValueError("cannot measure accuracy on an empty set")
    predicted = stack.predict(params, buffers, data.x, batch_size)
    return float((predicted == data.y.cpu()).float().mean())


def evaluate(stack: StackedModel, val: PartitionData, partition_ids: list[int], comm: Comm,
             batch_size: int, with_global: bool) -> EvalResult:
    """Each local partition on its shard; results gathered over all partitions via ``comm``."""
    n = comm.num_partitions
    local_acc = [accuracy(stack, *stack.replica(local), round_robin_shard(val, pid, n), batch_size)
                 for local, pid in enumerate(partition_ids)]
    per_partition = gather_partitions(local_acc, partition_ids, comm)
    global_acc = None
    if with_global:
        global_acc = accuracy(stack, *stack.mean_replica(comm), val, batch_size)
    return EvalResult(per_partition, sum(per_partition) / n, global_acc)
