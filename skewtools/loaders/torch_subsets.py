"""A Partitioning applied to a map-style PyTorch dataset: one ``torch.utils.data.Subset`` each.

The dataset must be indexed like the labels the partitioning was made from (same length, same
order), e.g. ``partition("iid", train_set.targets, ...)`` for a torchvision dataset.
"""

from __future__ import annotations

from collections.abc import Sized

from torch.utils.data import Dataset, Subset

from skewtools._checks import check_aligned
from skewtools.partitioning import Partitioning


def _check_length(dataset: Dataset, partitioning: Partitioning) -> None:
    if isinstance(dataset, Sized):
        check_aligned(len(dataset), partitioning, "dataset has {n} samples",
                      "partition this dataset's own labels")


def partition_subset(dataset: Dataset, partitioning: Partitioning, partition: int | str) -> Subset:
    """The samples of one partition (by position or name), in index order."""
    _check_length(dataset, partitioning)
    return Subset(dataset, partitioning.indices[partitioning.partition_id(partition)])


def partition_subsets(dataset: Dataset, partitioning: Partitioning) -> list[Subset]:
    """One ``Subset`` per partition, in partition order."""
    _check_length(dataset, partitioning)
    return [Subset(dataset, ix) for ix in partitioning.indices]
