"""Sort-and-shard, as in FedAvg's paper (McMahan et al. 2017, pathological non-IID MNIST).

Samples are sorted by label (within a label in a seeded random order, so the result does not
depend on how the data happens to be stored), cut into ``num_partitions * shards_per_partition``
contiguous shards of equal size (+-1; no sample is dropped), and each partition gets
``shards_per_partition`` shards chosen at random. With 2 shards each, most partitions hold
2 labels.
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    Assigned,
    check_count,
    check_num_partitions,
    check_seed,
    class_order,
    default_names,
    make_rng,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples


@register("shards")
def shards(
    samples: Samples, *, num_partitions: int, shards_per_partition: int = 2, seed: int = 0
) -> Assigned:
    """FedAvg's sort-and-shard partitions."""
    num_partitions = check_num_partitions(num_partitions)
    rng = make_rng(check_seed(seed))
    s = check_count("shards_per_partition", shards_per_partition)
    codes = samples.codes
    n, num_shards = len(codes), num_partitions * s
    if num_shards > n:
        raise ValueError(f"{num_shards} shards need at least that many samples, the data has {n}")
    order, _ = class_order(codes, samples.num_classes, rng)
    bounds = np.arange(num_shards + 1) * n // num_shards
    shard_of_pos = np.repeat(np.arange(num_shards), np.diff(bounds))
    partition_of_shard = np.empty(num_shards, dtype=np.int64)
    partition_of_shard[rng.permutation(num_shards)] = np.arange(num_shards) // s
    part = np.empty(n, dtype=np.int64)
    part[order] = partition_of_shard[shard_of_pos]
    return Assigned(part, default_names(num_partitions))
