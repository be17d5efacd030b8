"""Partitioners, one scheme per module, all reachable through the registry."""

# Importing each module registers its scheme.
from skewtools.partitioners import (  # noqa: F401
    by_attribute,
    classes_per_partition,
    dirichlet,
    iid,
    label_skew,
    mixed,
    quantity_skew,
    shards,
)
from skewtools.partitioners.registry import get_partitioner, list_partitioners, partition

__all__ = ["get_partitioner", "list_partitioners", "partition"]
