"""Read Flickr-Mammal shards as geographic partitions (docs/reference.md §1, 5/13-part splits).

``load_partitions(root, by="continent")`` maps each partition name ("Africa", ...) to a torch
``IterableDataset`` over that group's samples. Everything is planned from the shard index
(``shards.parquet``), so no tar is opened to find a group: each dataset reads only the shards
that hold its samples, keeps only its own keys (shards may mix groups) and knows its length.

Partitions are skewtools partitionings of the index rows: ``by`` uses the ``by_attribute``
partitioner, ``deal`` the ``iid`` partitioner, and the label counts are
:func:`skewtools.count_matrix`. So partitions come in skewtools' order: largest first (ties by
name), "other" last.

Points whose continent is "unknown" (at sea, Antarctica, invalid coordinates; see
:mod:`flickr_mammal.geocode`) are never guessed into a partition: they are left out of every
``by`` choice, including ``by=None``, so all groupings cover the same samples; ``excluded``
counts them (and, for ``by="subcontinent"``/``"country"``, placed points with no value there).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import torch
from torch.utils.data import IterableDataset, get_worker_info

from flickr_mammal.integrity import Facts, ShardTotals, check_index, checked_samples, row_facts
from flickr_mammal.regions import UNKNOWN
from flickr_mammal.shard_index import (
    IndexFiles,
    class_names,
    locate,
    open_split,
    shard_totals,
)
from flickr_mammal.splits import split_rank
from skewtools.loaders.shard_files import shard_path
from skewtools.loaders.wds_shards import KeyFilter, shard_pipeline
from skewtools.metrics import count_matrix
from skewtools.partitioners import partition
from skewtools.partitioning import Partitioning

log = logging.getLogger(__name__)

BY_COLUMNS: Final[dict[str | None, str]] = {
    "continent": "continent", "subcontinent": "subcontinent", "country": "country", None: "",
}
ALL: Final = "all"
OTHER: Final = "other"
TRAIN: Final = "train"
DEFAULT_SHUFFLE_BUFFER: Final = 1000   # samples: ~20 MB of 300 px JPEGs per reading process
_SLOTS: Final = 1025                   # pass counters: the main process and 1024 workers


class GeoShardDataset(IterableDataset):
    """One partition: yields ``(image, label)``; image is a PIL RGB image, or ``transform(image)``.

    With ``shuffle_buffer > 0`` each pass reads its shards in a shuffled order through a
    shuffle buffer of that many samples, both seeded by ``seed + epoch``. The epoch advances
    by itself: pass ``k`` of a reading process (the main process, or each DataLoader worker,
    persistent or not) since the last :meth:`set_epoch` ``(e)`` (or since creation: ``e = 0``)
    is epoch ``e + k``. So every pass comes in a new order, and the same seed and the same
    calls give the same orders; ``set_epoch(e)`` fixes the next pass's epoch (e.g. to resume).
    With DataLoader workers the shards are divided between workers (the same division every
    epoch: the shuffle only reorders each worker's own shards), so use at most as many workers
    as ``shards``.

    ``expected`` (shard name -> number of this partition's samples in it), ``digests``
    (key -> (JPEG length, sha256)), ``facts`` (key -> its index row) and ``totals`` (shard
    name -> samples the whole index lists in it) come from the index: a shard that ends early
    or holds extra samples, a sample whose ``.cls``/``.json`` disagree with its index row, or a
    JPEG that differs from its digest raises
    :class:`~flickr_mammal.integrity.DatasetIntegrityError` instead of being read silently.
    """

    def __init__(self, name: str, shards: tuple[Path, ...], keys: frozenset[str], *,
                 transform: Callable[[Any], Any] | None = None, shuffle_buffer: int = 0,
                 seed: int = 0, expected: Mapping[str, int] | None = None,
                 digests: Mapping[str, tuple[int, str]] | None = None,
                 facts: Mapping[str, Facts] | None = None,
                 totals: Mapping[str, int] | None = None) -> None:
        super().__init__()
        self.name, self.shards, self.keys = name, shards, keys
        self.transform, self.shuffle_buffer, self.seed = transform, shuffle_buffer, seed
        self.expected, self.digests, self.facts, self.totals = expected, digests, facts, totals
        # Shared memory: DataLoader workers get a copy of the dataset (persistent workers keep
        # it for every epoch), so a plain attribute set later would never reach them. Slot 0:
        # the epoch set_epoch gave; slot 1 + w: passes process w started since (w = -1: the
        # main process). Each process writes only its own slot, so no lock is needed.
        self._passes = torch.zeros(_SLOTS + 1, dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        """The epoch the next pass in this process will read."""
        return int(self._passes[0]) + int(self._passes[1 + self._slot()])

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"GeoShardDataset({self.name!r}, samples={len(self)}, shards={len(self.shards)})"

    def set_epoch(self, epoch: int) -> None:
        """Read the next pass (in every process) as epoch ``epoch``; later passes go on."""
        self._passes[1:] = 0
        self._passes[0] = epoch

    @staticmethod
    def _slot() -> int:
        worker = get_worker_info()
        slot = 0 if worker is None else 1 + worker.id
        if slot >= _SLOTS:
            raise ValueError(f"at most {_SLOTS - 1} DataLoader workers read one partition")
        return slot

    def _next_epoch(self) -> int:
        slot = 1 + self._slot()
        epoch = int(self._passes[0]) + int(self._passes[slot])
        self._passes[slot] += 1
        return epoch

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        seed = self.seed + self._next_epoch()
        urls = [str(p) for p in self.shards]
        # Each rank reads its whole partition (a partition is one "data center"), hence no
        # node splitter; workers divide the shards in a fixed way (so each worker knows which
        # it must finish, and no epoch disagreement can give a shard to two workers).
        worker = get_worker_info()
        if worker is not None:
            urls = urls[worker.id::worker.num_workers]
        if not urls:      # more workers than shards: this one has nothing to read
            return iter(())
        if self.shuffle_buffer > 0:
            random.Random(seed).shuffle(urls)
        keep = KeyFilter(self.keys)  # before decoding: other partitions' files are skipped unread
        hook = ShardTotals(self.totals) if self.totals is not None else None
        pipeline = shard_pipeline(tuple(urls), keep.member, hook).select(keep.sample)
        if self.expected is not None:  # in shard order, before the shuffle buffer mixes them
            pipeline = pipeline.compose(partial(checked_samples, urls=urls,
                                                expected=self.expected, digests=self.digests,
                                                facts=self.facts))
        if self.shuffle_buffer > 0:
            pipeline = pipeline.shuffle(self.shuffle_buffer, seed=seed)
        pipeline = pipeline.decode("pil").to_tuple("jpg", "cls")
        if self.transform is not None:
            pipeline = pipeline.map_tuple(self.transform, int)
        return iter(pipeline)


class GeoPartitions(Mapping[str, GeoShardDataset]):
    """Partition name -> dataset, with the label counts that describe the skew."""

    def __init__(self, datasets: dict[str, GeoShardDataset], counts: pd.DataFrame, *,
                 by: str | None, split: str, excluded: int,
                 partitioning: Partitioning | None = None) -> None:
        self._datasets = datasets
        self.partitioning = partitioning  # skewtools' view, over the split's placed index rows
        self.counts = counts          # partitions x classes (the build's, label order) counts
        self.class_names: tuple[str, ...] = tuple(counts.columns)  # position = label id
        self.sizes = counts.sum(axis=1).rename("samples")
        self.by, self.split, self.excluded = by, split, excluded

    def __getitem__(self, name: str) -> GeoShardDataset:
        if name not in self._datasets:
            raise KeyError(f"no partition {name!r}; partitions: {', '.join(self._datasets)}")
        return self._datasets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._datasets)

    def __len__(self) -> int:
        return len(self._datasets)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}: {v}" for k, v in self.sizes.items())
        return f"GeoPartitions(by={self.by!r}, split={self.split!r}, {{{sizes}}}, " \
               f"excluded={self.excluded})"


def _by_attribute(rows: pd.DataFrame, by: str, min_size: int, drop_small: bool) -> Partitioning:
    return partition("by_attribute", rows, attribute=BY_COLUMNS[by], min_size=max(min_size, 1),
                     small="drop" if drop_small else "merge", missing_values=["", UNKNOWN])


def _dealt(rows: pd.DataFrame, n: int, seed: int) -> Partitioning:
    """``n`` IID partitions "iid-0", ... (zero-padded, so name order is partition order)."""
    dealt = partition("iid", rows, num_partitions=n, seed=seed)
    width = len(str(n - 1))
    return Partitioning(dealt.indices, tuple(f"iid-{i:0{width}d}" for i in range(n)),
                        dealt.scheme, dealt.params, dealt.num_samples)


def _capped(rows: pd.DataFrame, p: Partitioning, max_samples: int, seed: int) -> Partitioning:
    """The ``max_samples`` lowest keyed-hash ranks (``seed``) of each partition."""
    ranks = rows["key"].map(lambda k: split_rank(k, seed)).to_numpy()
    kept = tuple(ix[np.argsort(ranks[ix], kind="stable")[:max_samples]] for ix in p.indices)
    return Partitioning(kept, p.names, p.scheme, {**p.params, "max_samples": max_samples},
                        p.num_samples)


def _label_counts(rows: pd.DataFrame, p: Partitioning, names: tuple[str, ...]) -> pd.DataFrame:
    """Partitions x classes: one column per class of the build (``names``, label order)."""
    counts = count_matrix(p, rows, classes=list(range(len(names))))
    counts.columns = pd.Index(names, name="class_name")
    return counts.astype("int64")


def _digests(rows: pd.DataFrame) -> dict[str, tuple[int, str]] | None:
    if "jpg_sha256" not in rows.columns:  # an index written before digests were recorded
        return None
    return dict(zip(rows["key"], zip(rows["jpg_bytes"].astype(int), rows["jpg_sha256"],
                                     strict=True), strict=True))


def _paper_split(root: str | Path, by: str, split: str
                 ) -> tuple[pd.DataFrame, pd.DataFrame, IndexFiles]:
    """Like :func:`open_split`, for the column ``by`` of an imported release: the rows with a
    part index k on the train/val side ``split`` of that scheme."""
    files = locate(root)
    index = pd.read_parquet(files.index)
    check_index(index, files.shard_dir, files.index, files.manifest)
    if by not in index.columns:
        raise ValueError(f"no column {by!r} in {files.index}; paper columns there: "
                         f"{[c for c in index.columns if c.startswith('paper_')]}")
    rows = index[(index[f"{by}_split"] == split) & index[by].notna()]
    if rows.empty:
        raise ValueError(f"{by} has no {split!r} samples in {files.index}")
    return index, rows, files


def _paper_parts(rows: pd.DataFrame, by: str) -> Partitioning:
    """The paper's parts "00", "01", ... in part order (rows: an imported release's)."""
    parts = rows[by].astype(int).to_numpy()
    ks = sorted(set(parts.tolist()))
    return Partitioning(tuple(np.flatnonzero(parts == k) for k in ks),
                        tuple(f"{k:02d}" for k in ks), "paper", {"column": by}, len(rows))


def _check_options(by: str | None, min_size: int, shuffle_buffer: int | None,
                   max_samples: int | None, deal: int | None) -> None:
    if deal is not None and (by is not None or deal < 1):
        raise ValueError(f"deal={deal}: deal N >= 1 IID partitions from by=None")
    paper = by is not None and by.startswith("paper_")  # an imported release's partitions
    if by not in BY_COLUMNS and not paper:
        raise ValueError(f"by must be one of {list(BY_COLUMNS)} or an imported release's "
                         f"paper_<scheme> (got {by!r})")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None (got {max_samples})")
    if min_size < 0 or (shuffle_buffer is not None and shuffle_buffer < 0):
        raise ValueError(f"min_size and shuffle_buffer must be >= 0 (got {min_size}, "
                         f"{shuffle_buffer})")


def load_partitions(root: str | Path, by: str | None = "continent", split: str = TRAIN,
                    transform: Callable[[Any], Any] | None = None, min_size: int = 0,
                    shuffle_buffer: int | None = None, seed: int = 0, *,
                    drop_small: bool = False, max_samples: int | None = None,
                    deal: int | None = None) -> GeoPartitions:
    """Partition name -> PyTorch dataset of ``(image, label)`` for one split of a shard set.

    ``by``: "continent", "subcontinent", "country" or None (one partition "all"); for an
    imported release also "paper_5parts_skewed" etc. (partitions "00", "01", ...: the paper's
    parts on the train/val side ``split``, photos without coordinates included). Groups with
    fewer than ``min_size`` samples are merged into "other" (or left out with ``drop_small``).
    Partitions come largest first (ties by name), "other" last: skewtools' ``by_attribute``
    order. ``root`` is the shard folder or a build root. ``shuffle_buffer``: None (default)
    shuffles the training split with a buffer of ``DEFAULT_SHUFFLE_BUFFER`` samples and reads
    other splits in shard order; 0 never shuffles. ``max_samples`` keeps at most that many
    samples of each partition, a uniform choice fixed by ``seed`` (a keyed hash of each key;
    e.g. a validation subset that spans every continent). ``deal=N`` (with ``by=None``) deals
    the same samples into N IID partitions "iid-0", ... with skewtools' ``iid`` partitioner
    (``seed``; independent of the index's row order): the IID counterpart of the geographic
    partitions. Each reads only its own samples.
    """
    _check_options(by, min_size, shuffle_buffer, max_samples, deal)
    if shuffle_buffer is None:
        shuffle_buffer = DEFAULT_SHUFFLE_BUFFER if split == TRAIN else 0
    paper = by is not None and by.startswith("paper_")
    index, rows, files = _paper_split(root, by, split) if paper else open_split(root, split)
    unknown = (rows["continent"].isna() | rows["continent"].isin([UNKNOWN, ""])) & (not paper)
    rows = rows[~unknown].reset_index(drop=True)
    if paper:
        p = _paper_parts(rows, str(by))
    elif deal is not None:
        p = _dealt(rows, deal, seed)
    elif by is None:
        p = Partitioning((np.arange(len(rows)),), (ALL,), "all", {}, len(rows))
    else:
        p = _by_attribute(rows, by, min_size, drop_small)
        small = [n for n, size in zip(p.names, p.sizes, strict=True) if n == OTHER and size]
        if small or (drop_small and p.dropped):
            log.info("partitions under min_size=%d %s", min_size,
                     "dropped" if drop_small else f"merged into {OTHER!r}")
    missing = 0 if by is None or paper else int(rows[BY_COLUMNS[by]].isna().sum()
                                       + rows[BY_COLUMNS[by]].isin(["", UNKNOWN]).sum())
    if max_samples is not None:
        p = _capped(rows, p, max_samples, seed)
    totals, digests = shard_totals(index), _digests(rows)
    datasets = {}
    for name, ix in zip(p.names, p.indices, strict=True):
        if not len(ix):
            continue
        members = rows.iloc[ix]
        shards = tuple(shard_path(files.shard_dir, s) for s in sorted(members["shard"].unique()))
        keys = frozenset(members["key"])
        datasets[name] = GeoShardDataset(
            name, shards, keys, transform=transform, shuffle_buffer=shuffle_buffer, seed=seed,
            expected=members["shard"].value_counts().to_dict(),
            digests=None if digests is None else {k: digests[k] for k in keys},
            facts=row_facts(members), totals=totals)
    counts = _label_counts(rows, p, class_names(index)).loc[list(datasets)]
    return GeoPartitions(datasets, counts, by=by, split=split,
                         excluded=int(unknown.sum()) + missing, partitioning=p)
