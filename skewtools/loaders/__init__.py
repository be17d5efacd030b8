"""Apply a Partitioning to data: PyTorch map-style datasets, WebDataset shards, Flower Datasets."""

from collections.abc import Sequence
from typing import Any

from skewtools.loaders.shard_files import ShardPathError, open_shard, shard_path, shard_samples
from skewtools.loaders.torch_subsets import partition_subset, partition_subsets
from skewtools.loaders.wds_shards import (
    KeyFilter,
    ShardPlan,
    partition_webdataset,
    plan_partition,
    shard_pipeline,
)
from skewtools.partitioning import Partitioning

__all__ = [
    "KeyFilter",
    "ShardPathError",
    "ShardPlan",
    "as_flower_partitioner",
    "open_shard",
    "partition_subset",
    "partition_subsets",
    "partition_webdataset",
    "plan_partition",
    "shard_path",
    "shard_pipeline",
    "shard_samples",
]


def as_flower_partitioner(partitioning: Partitioning, keys: Sequence[str] | None = None,
                          key_column: str | None = None) -> Any:
    """See :func:`skewtools.loaders.flower.as_flower_partitioner`; imported lazily because
    ``flwr-datasets`` (and ``datasets``) is an optional extra."""
    from skewtools.loaders.flower import as_flower_partitioner as adapter

    return adapter(partitioning, keys=keys, key_column=key_column)
