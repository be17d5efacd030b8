"""A Partitioning applied to WebDataset shards through the shard index / manifest.

The index is a DataFrame with one row per sample, aligned with the data the partitioning was
made from (same rows, same order), holding the sample ``key`` and the ``shard`` file it lives
in (``{split}-{NNNNNN}.tar``, relative to ``shards_dir``; Flickr-Mammal's ``shards.parquet``).
A partition's dataset opens only the shards that hold its keys and yields only its keys
(shards may mix partitions); ``select_files`` skips other samples' members unread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import webdataset as wds

from skewtools._checks import check_aligned
from skewtools.partitioning import Partitioning


@dataclass(frozen=True)
class ShardPlan:
    """What one partition reads: its sample keys and the shard URLs that hold them (sorted)."""

    keys: frozenset[str]
    urls: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.keys)


class KeyFilter:
    """Keep only some sample keys: ``sample`` for ``.select``, ``member`` for WebDataset's
    ``select_files`` (other samples' files are skipped unread). Picklable, as DataLoader
    workers pickle the pipeline's callables."""

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

    def sample(self, sample: dict[str, Any]) -> bool:
        return sample["__key__"] in self.keys

    def member(self, fname: str) -> bool:
        # webdataset's key is the member name up to the first dot of its basename.
        head, _, base = fname.rpartition("/")
        return f"{head}/{base.split('.', 1)[0]}".lstrip("/") in self.keys


def plan_partition(
    index: pd.DataFrame,
    partitioning: Partitioning,
    partition: int | str,
    shards_dir: str | Path,
    *,
    key_column: str = "key",
    shard_column: str = "shard",
) -> ShardPlan:
    """The keys of ``partition`` and the shards holding them, from the index alone."""
    check_aligned(len(index), partitioning, "index has {n} rows",
                  "pass the same manifest rows, in the same order")
    for column in (key_column, shard_column):
        if column not in index.columns:
            raise ValueError(f"index has no {column!r} column; columns: {list(index.columns)}")
    rows = index.iloc[partitioning.indices[partitioning.partition_id(partition)]]
    shards = sorted(set(rows[shard_column].astype(str)))
    urls = tuple(str(Path(shards_dir) / s) for s in shards)
    return ShardPlan(keys=frozenset(rows[key_column].astype(str)), urls=urls)


def partition_webdataset(
    index: pd.DataFrame,
    partitioning: Partitioning,
    partition: int | str,
    shards_dir: str | Path,
    *,
    key_column: str = "key",
    shard_column: str = "shard",
    **webdataset_kwargs: Any,
) -> wds.WebDataset:
    """A ``wds.WebDataset`` of one partition's samples (raw: decode with ``.decode(...)``).

    Shards are read in sorted order and not shuffled by default; ``nodesplitter`` is off
    because a partition is already one rank's share. ``webdataset_kwargs`` go to WebDataset.
    """
    plan = plan_partition(
        index, partitioning, partition, shards_dir, key_column=key_column, shard_column=shard_column
    )
    if not plan.urls:
        raise ValueError(f"partition {partition!r} holds no samples; there is nothing to read")
    keep = KeyFilter(plan.keys)
    options: dict[str, Any] = {"shardshuffle": False, "nodesplitter": None, **webdataset_kwargs}
    options.setdefault("select_files", keep.member)
    return wds.WebDataset(list(plan.urls), **options).select(keep.sample)
