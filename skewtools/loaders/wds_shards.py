"""A Partitioning applied to WebDataset shards through the shard index / manifest.

The index is a DataFrame with one row per sample, aligned with the data the partitioning was
made from (same rows, same order), holding the sample ``key`` and the ``shard`` file it lives
in (``{split}-{NNNNNN}.tar``, relative to ``shards_dir``; Flickr-Mammal's ``shards.parquet``).
A partition's dataset opens only the shards that hold its keys and yields only its keys
(shards may mix partitions); other samples' members are skipped unread. Every shard name is
checked and opened by :mod:`skewtools.loaders.shard_files` (inside the folder, a regular file,
an uncompressed tar), never by webdataset's own URL opener.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import webdataset as wds
from torch.utils.data import IterableDataset

from skewtools._checks import check_aligned
from skewtools.loaders.shard_files import shard_path, shard_samples
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
    urls = tuple(str(shard_path(shards_dir, s)) for s in shards)
    return ShardPlan(keys=frozenset(rows[key_column].astype(str)), urls=urls)


class ShardSource(IterableDataset):
    """The raw samples of checked shard paths, in order (the first stage of a pipeline)."""

    def __init__(self, urls: tuple[str, ...], select_files: Any = None,
                 on_shard_end: Any = None) -> None:
        super().__init__()
        self.urls, self.select_files, self.on_shard_end = urls, select_files, on_shard_end

    def __iter__(self) -> Any:
        return shard_samples(self.urls, self.select_files, self.on_shard_end)


def shard_pipeline(urls: tuple[str, ...], select_files: Any = None,
                   on_shard_end: Any = None) -> wds.FluidWrapper:
    """A webdataset pipeline (``.select``, ``.shuffle``, ``.decode``, ...) over the raw samples
    of ``urls``, read by :func:`~skewtools.loaders.shard_files.shard_samples`."""
    return wds.FluidWrapper(ShardSource(urls, select_files, on_shard_end))


def partition_webdataset(
    index: pd.DataFrame,
    partitioning: Partitioning,
    partition: int | str,
    shards_dir: str | Path,
    *,
    key_column: str = "key",
    shard_column: str = "shard",
) -> wds.FluidWrapper:
    """A webdataset pipeline of one partition's samples (raw: decode with ``.decode(...)``).

    Shards are read in sorted order, whole (a partition is already one rank's share); add
    ``.shuffle(n)`` for a sample buffer.
    """
    plan = plan_partition(
        index, partitioning, partition, shards_dir, key_column=key_column, shard_column=shard_column
    )
    if not plan.urls:
        raise ValueError(f"partition {partition!r} holds no samples; there is nothing to read")
    keep = KeyFilter(plan.keys)
    return shard_pipeline(plan.urls, keep.member).select(keep.sample)
