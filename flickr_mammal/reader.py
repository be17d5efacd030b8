"""Read Flickr-Mammal shards as geographic partitions (docs/reference.md §1, 5/13-part splits).

``load_partitions(root, by="continent")`` maps each partition name ("Africa", ...) to a torch
``IterableDataset`` over that group's samples. Everything is planned from the shard index
(``shards.parquet``), so no tar is opened to find a group: each dataset reads only the shards
that hold its samples, keeps only its own keys (shards may mix groups) and knows its length.

Points whose continent is "unknown" (at sea, Antarctica, invalid coordinates; see
:mod:`flickr_mammal.geocode`) are never guessed into a partition: they are left out of every
``by`` choice, including ``by=None``, so all groupings cover the same samples; ``excluded``
counts them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final

import pandas as pd
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.integrity import check_index, checked_samples
from flickr_mammal.regions import UNKNOWN
from flickr_mammal.shards import INDEX_NAME
from flickr_mammal.splits import split_rank
from skewtools.loaders.wds_shards import KeyFilter

log = logging.getLogger(__name__)

BY_COLUMNS: Final[dict[str | None, str]] = {
    "continent": "continent", "subcontinent": "subcontinent", "country": "country", None: "",
}
ALL: Final = "all"
OTHER: Final = "other"


class GeoShardDataset(IterableDataset):
    """One partition: yields ``(image, label)``; image is a PIL RGB image, or ``transform(image)``.

    With ``shuffle_buffer > 0`` the shard order and a sample buffer are shuffled from
    ``seed + epoch`` (call :meth:`set_epoch` between epochs; it reaches DataLoader workers, also
    persistent ones). With DataLoader workers the shards are divided between workers, so use at
    most as many workers as ``shards``.

    ``expected`` (shard name -> number of this partition's samples in it) and ``digests``
    (key -> (JPEG length, sha256)) come from the index: a shard that ends early or holds extra
    samples, or a JPEG that differs from its digest, raises
    :class:`~flickr_mammal.integrity.DatasetIntegrityError` instead of being read silently.
    """

    def __init__(self, name: str, shards: tuple[Path, ...], keys: frozenset[str], *,
                 transform: Callable[[Any], Any] | None = None, shuffle_buffer: int = 0,
                 seed: int = 0, expected: Mapping[str, int] | None = None,
                 digests: Mapping[str, tuple[int, str]] | None = None) -> None:
        super().__init__()
        self.name, self.shards, self.keys = name, shards, keys
        self.transform, self.shuffle_buffer, self.seed = transform, shuffle_buffer, seed
        self.expected, self.digests = expected, digests
        # Shared memory: DataLoader workers get a copy of the dataset once (persistent workers
        # keep it for every epoch), so a plain attribute set later would never reach them.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __len__(self) -> int:
        return len(self.keys)

    def __repr__(self) -> str:
        return f"GeoShardDataset({self.name!r}, samples={len(self)}, shards={len(self.shards)})"

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __iter__(self) -> Iterator[tuple[Any, int]]:
        urls = [str(p) for p in self.shards]
        seed = self.seed + self.epoch
        if self.shuffle_buffer > 0:
            random.Random(seed).shuffle(urls)
        # Each rank reads its whole partition (a partition is one "data center"), hence no
        # node splitter; workers divide the shards (here, so each knows which it must finish).
        worker = get_worker_info()
        if worker is not None:
            urls = urls[worker.id::worker.num_workers]
        if not urls:      # more workers than shards: this one has nothing to read
            return iter(())
        keep = KeyFilter(self.keys)  # before decoding: other partitions' files are skipped unread
        pipeline = wds.WebDataset(urls, shardshuffle=False, nodesplitter=None,
                                  workersplitter=None, empty_check=False,
                                  select_files=keep.member)
        pipeline = pipeline.select(keep.sample)
        if self.expected is not None:  # in shard order, before the shuffle buffer mixes them
            pipeline = pipeline.compose(partial(checked_samples, urls=urls,
                                                expected=self.expected, digests=self.digests))
        if self.shuffle_buffer > 0:
            pipeline = pipeline.shuffle(self.shuffle_buffer, seed=seed)
        pipeline = pipeline.decode("pil").to_tuple("jpg", "cls")
        if self.transform is not None:
            pipeline = pipeline.map_tuple(self.transform, int)
        return iter(pipeline)


class GeoPartitions(Mapping[str, GeoShardDataset]):
    """Partition name -> dataset, with the label counts that describe the skew."""

    def __init__(self, datasets: dict[str, GeoShardDataset], counts: pd.DataFrame, *,
                 by: str | None, split: str, excluded: int) -> None:
        self._datasets = datasets
        self.counts = counts          # partitions x classes (all 42 class names) label counts
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


def _locate(root: Path) -> tuple[Path, Path]:
    """(index file, shard folder): accepts a shard folder or a build root with ``shards/``."""
    for index_path in (root / INDEX_NAME, root / "shards" / INDEX_NAME):
        if index_path.exists():
            break
    else:
        raise FileNotFoundError(f"no {INDEX_NAME} in {root} or {root / 'shards'}; write shards "
                                "with flickr_mammal.shards.write_shards() first")
    return index_path, index_path.parent


def _shard_folder(default: Path, root: Path, shard_names: pd.Series) -> Path:
    # A build may keep its index copied to the build root and the tars in shards/.
    if len(shard_names) and not (default / shard_names.iloc[0]).exists():
        if (root / "shards" / shard_names.iloc[0]).exists():
            return root / "shards"
    return default


def _group_names(rows: pd.DataFrame, by: str | None, min_size: int, drop_small: bool) -> pd.Series:
    """Partition name of each row: its group, or "other" / dropped (NA) below ``min_size``."""
    if by is None:
        return pd.Series(ALL, index=rows.index)
    names = rows[BY_COLUMNS[by]].astype(str)
    sizes = names.value_counts()
    small = sizes.index[sizes < min_size]
    if len(small):
        log.info("partitions under min_size=%d %s: %s", min_size,
                 "dropped" if drop_small else f"merged into {OTHER!r}", list(small))
    return names.mask(names.isin(small), pd.NA if drop_small else OTHER)


def _dealt(rows: pd.DataFrame, n: int, seed: int) -> pd.Series:
    """Partition name of each row when dealing ``n`` IID partitions (zero-padded: name order is
    dealing order)."""
    order = rows["key"].map(lambda k: split_rank(k, seed)).sort_values(kind="stable").index
    width = len(str(n - 1))
    turn = pd.Series([f"iid-{i % n:0{width}d}" for i in range(len(order))], index=order)
    return turn.reindex(rows.index)


def _label_counts(rows: pd.DataFrame, names: pd.Series, order: list[str]) -> pd.DataFrame:
    counts = pd.crosstab(names, rows["label"]).reindex(
        index=order, columns=range(len(CLASS_NAMES)), fill_value=0)
    counts.columns = pd.Index(CLASS_NAMES, name="class_name")
    counts.index.name = "partition"
    return counts.astype("int64")


def _digests(rows: pd.DataFrame) -> dict[str, tuple[int, str]] | None:
    if "jpg_sha256" not in rows.columns:  # an index written before digests were recorded
        return None
    return dict(zip(rows["key"], zip(rows["jpg_bytes"].astype(int), rows["jpg_sha256"],
                                     strict=True), strict=True))


def split_rows(root: str | Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path]:
    """The shard index, its rows of ``split``, the shard folder and the index's path (a build
    folder or its ``shards/`` folder); an unknown split raises, naming the ones there."""
    root = Path(root)
    index_path, shard_dir = _locate(root)
    index = pd.read_parquet(index_path)
    rows = index[index["split"] == split]
    if rows.empty:
        raise ValueError(f"split {split!r} has no samples in {index_path}; splits there: "
                         f"{sorted(index['split'].unique())}")
    return index, rows, _shard_folder(shard_dir, root, rows["shard"]), index_path


def _paper_rows(root: str | Path, by: str, split: str
                ) -> tuple[pd.DataFrame, pd.DataFrame, Path, Path]:
    """Like :func:`split_rows`, for the column ``by`` of an imported release: its part
    index k, on the train/val side ``split`` of that scheme."""
    index_path, shard_dir = _locate(Path(root))
    index = pd.read_parquet(index_path)
    if by not in index.columns:
        raise ValueError(f"no column {by!r} in {index_path}; paper columns there: "
                         f"{[c for c in index.columns if c.startswith('paper_')]}")
    rows = index[(index[f"{by}_split"] == split) & index[by].notna()]
    if rows.empty:
        raise ValueError(f"{by} has no {split!r} samples in {index_path}")
    return index, rows, _shard_folder(shard_dir, Path(root), rows["shard"]), index_path


def load_partitions(root: str | Path, by: str | None = "continent", split: str = "train",
                    transform: Callable[[Any], Any] | None = None, min_size: int = 0,
                    shuffle_buffer: int = 0, seed: int = 0, *,
                    drop_small: bool = False, max_samples: int | None = None,
                    deal: int | None = None) -> GeoPartitions:
    """Partition name -> PyTorch dataset of ``(image, label)`` for one split of a shard set.

    ``by``: "continent", "subcontinent", "country" or None (one partition "all"); for an
    imported release also "paper_5parts_skewed" etc. (partitions "00", "01", ...: the
    paper's parts on the train/val side ``split``, photos without coordinates included). Groups with
    fewer than ``min_size`` samples are merged into "other" (or left out with ``drop_small``).
    Partitions come in name order, "other" last. ``root`` is the shard folder or a build root.
    ``max_samples`` keeps at most that many samples of each partition, a uniform choice fixed by
    ``seed`` (a keyed hash of each key; e.g. a validation subset that spans every continent).
    ``deal=N`` (with ``by=None``) deals the same samples into N IID partitions "iid-0", ...,
    round robin in the order of a keyed hash (``seed``) of their keys: the IID counterpart of
    the geographic partitions. Each reads only its own samples.
    """
    if deal is not None and (by is not None or deal < 1):
        raise ValueError(f"deal={deal}: deal N >= 1 IID partitions from by=None")
    paper = by is not None and by.startswith("paper_")  # an imported release's partitions
    if by not in BY_COLUMNS and not paper:
        raise ValueError(f"by must be one of {list(BY_COLUMNS)} or an imported release's "
                         f"paper_<scheme> (got {by!r})")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 or None (got {max_samples})")
    if min_size < 0 or shuffle_buffer < 0:
        raise ValueError(f"min_size and shuffle_buffer must be >= 0 (got {min_size}, "
                         f"{shuffle_buffer})")
    if paper:
        index, rows, shard_dir, index_path = _paper_rows(root, str(by), split)
    else:
        index, rows, shard_dir, index_path = split_rows(root, split)
    check_index(index, shard_dir, index_path)
    unknown = rows["continent"].isin([UNKNOWN, ""]) & (not paper)  # the paper's have no geo
    rows = rows[~unknown]
    names = (_dealt(rows, deal, seed) if deal is not None
             else rows[str(by)].map("{:02d}".format) if paper
             else _group_names(rows, by, min_size, drop_small).dropna())
    rows = rows.loc[names.index]
    if max_samples is not None:   # the lowest keyed-hash ranks of each partition
        ranks = rows["key"].map(lambda k: split_rank(k, seed)).sort_values(kind="stable")
        keep = ranks.groupby(names.loc[ranks.index], sort=False).head(max_samples).index
        rows, names = rows.loc[keep], names.loc[keep]
    order = sorted(set(names) - {OTHER}) + ([OTHER] if OTHER in set(names) else [])
    datasets = {}
    for name in order:
        members = rows[names == name]
        shards = tuple(shard_dir / s for s in sorted(members["shard"].unique()))
        datasets[name] = GeoShardDataset(name, shards, frozenset(members["key"]),
                                         transform=transform, shuffle_buffer=shuffle_buffer,
                                         seed=seed, expected=members["shard"].value_counts()
                                         .to_dict(), digests=_digests(members))
    return GeoPartitions(datasets, _label_counts(rows, names, order), by=by, split=split,
                         excluded=int(unknown.sum()))
