"""Geographic partitions as Flower partitions, numbered the way Flower numbers its nodes.

Flower's simulation gives each ClientApp an integer ``partition-id`` (0 .. num-partitions - 1);
:func:`load_partitions` keys partitions by name ("Africa", ...). ``geo_partitions`` fixes the
bridge once: partition ids follow :func:`load_partitions`' order (skewtools' ``by_attribute``
order: largest first, ties by name, "other" last; the same for the same build), the mapping is
logged, and ``load_partition(partition_id)`` returns that partition's PyTorch
dataset. No Flower import is needed here; see ``examples/flower_continents`` for a Flower app.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flickr_mammal.reader import GeoPartitions, GeoShardDataset, load_partitions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FlowerPartitions:
    """``names[partition_id]`` is the partition's name; ``partitions`` the datasets by name."""

    names: dict[int, str]
    partitions: GeoPartitions

    @property
    def num_partitions(self) -> int:
        return len(self.names)

    def load_partition(self, partition_id: int) -> GeoShardDataset:
        """The PyTorch dataset of Flower's ``partition_id`` (``context.node_config``)."""
        if partition_id not in self.names:
            raise KeyError(f"partition_id {partition_id} out of range 0..{len(self.names) - 1}; "
                           f"run the simulation with num_supernodes={len(self.names)}")
        return self.partitions[self.names[partition_id]]


def geo_partitions(root: str | Path, by: str = "continent", split: str = "train",
                   transform: Callable[[Any], Any] | None = None,
                   **load_kwargs: Any) -> FlowerPartitions:
    """One Flower partition per geographic group of ``split`` (``load_partitions`` keywords
    pass through, e.g. ``min_size``, ``max_samples``, ``shuffle_buffer``, ``seed``)."""
    parts = load_partitions(root, by=by, split=split, transform=transform, **load_kwargs)
    names = dict(enumerate(parts))
    log.info("Flower partition ids (by=%s, split=%s): %s", by, split,
             ", ".join(f"{i}={name} ({len(parts[name])})" for i, name in names.items()))
    return FlowerPartitions(names, parts)


def continent_partitions(root: str | Path, split: str = "train",
                         transform: Callable[[Any], Any] | None = None,
                         **load_kwargs: Any) -> FlowerPartitions:
    """:func:`geo_partitions` by continent: one Flower node per continent."""
    return geo_partitions(root, "continent", split, transform, **load_kwargs)
