"""A Partitioning as a Flower Datasets ``Partitioner`` (optional extra ``flwr-datasets``).

>>> from datasets import Dataset
>>> fl = as_flower_partitioner(p)
>>> fl.dataset = hf_dataset          # rows aligned with the labels p was made from
>>> fl.load_partition(0)             # a datasets.Dataset with partition 0's rows
"""

from __future__ import annotations

from typing import Any

from skewtools._checks import check_aligned
from skewtools.partitioning import Partitioning


def as_flower_partitioner(partitioning: Partitioning) -> Any:
    """Wrap ``partitioning`` in a ``flwr_datasets.partitioner.Partitioner`` subclass."""
    try:
        from flwr_datasets.partitioner import Partitioner
    except ImportError as err:
        raise ImportError(
            "the Flower adapter needs flwr-datasets: pip install 'noniid-quagmire[flower]'"
        ) from err

    class SkewtoolsPartitioner(Partitioner):
        """Serves the partitions of a fixed :class:`~skewtools.Partitioning`."""

        def __init__(self, fixed: Partitioning) -> None:
            super().__init__()
            self.partitioning = fixed

        @property
        def num_partitions(self) -> int:
            return self.partitioning.num_partitions

        def load_partition(self, partition_id: int) -> Any:
            check_aligned(len(self.dataset), self.partitioning, "dataset has {n} rows")
            ix = self.partitioning.indices[self.partitioning.partition_id(partition_id)]
            return self.dataset.select(ix)

    return SkewtoolsPartitioner(partitioning)
