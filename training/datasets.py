"""Datasets for the studies and the data interface of the engine (docs/reference.md §3).

- :class:`PartitionData`: one partition's in-memory ``(x, y)``; sampled by shuffled epochs.
- :class:`BatchSource`: anything yielding an endless stream of batches (e.g. Flickr-Mammal shards
  through :class:`IterableBatchSource`).
- :func:`load_digits_dataset`: scikit-learn's 1,797 real 8x8 digits, embedded and offline.
- :func:`load_cifar10`: CIFAR-10 from a local torchvision-format folder (``cifar-10-batches-py``).
- :func:`split_partitions`: apply a partitioning (index arrays, e.g. from ``skewtools.partition``).
"""

from __future__ import annotations

import itertools
import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

Batch = tuple[torch.Tensor, torch.Tensor]


@runtime_checkable
class BatchSource(Protocol):
    """An endless stream of ``(x[b, ...], y[b])`` batches of one partition."""

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]: ...


@dataclass(frozen=True)
class PartitionData:
    """One partition's training data (or a validation set), in memory."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x and y differ in length ({len(self.x)} vs {len(self.y)})")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray | torch.Tensor | Sequence[int]) -> PartitionData:
        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return PartitionData(self.x[index], self.y[index])

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        """Shuffled epochs (a fresh permutation each), dropping an epoch's incomplete tail."""
        for index in index_batches(len(self), batch_size, rng):
            index = torch.from_numpy(index)
            yield self.x[index], self.y[index]


def index_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """The sample indices of :meth:`PartitionData.batches`: shuffled epochs of ``range(n)``."""
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch size {batch_size} needs 1..{n} samples per partition; "
                         f"lower batch_size or give the partition more data")
    while True:
        order = rng.permutation(n)
        for start in range(0, n - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


class IterableBatchSource:
    """Batches from an iterable of ``(image, label)`` pairs, restarted when it runs out.

    Order comes from the iterable itself (e.g. webdataset shard shuffling); ``rng`` is unused.
    Each pass calls the iterable's ``set_epoch(pass)`` when it has one, so every pass comes in
    a new order. ``num_workers > 0`` reads it through a torch ``DataLoader`` with that many
    worker processes (decoding and transforms leave the training thread); the iterable must
    then be a torch ``IterableDataset`` that divides itself between workers (e.g.
    ``GeoShardDataset``: by shard), and each worker's batches are re-cut to ``batch_size``.
    """

    def __init__(self, samples: Iterable[tuple[Any, Any]], num_workers: int = 0) -> None:
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.samples = samples
        self.num_workers = num_workers
        self.passes = 0
        self._probe: Iterator[tuple[Any, Any]] | None = None   # take()'s own pass

    def batches(self, batch_size: int, rng: np.random.Generator) -> Iterator[Batch]:
        while True:
            full_batches = 0
            for batch in self._pass(batch_size):
                yield batch
                full_batches += 1
            if full_batches == 0:   # restarting would loop forever
                raise ValueError(f"the sample stream holds fewer than one batch ({batch_size})")

    def _pass(self, batch_size: int) -> Iterator[Batch]:
        """One pass over the stream in full batches (an incomplete tail is dropped)."""
        if hasattr(self.samples, "set_epoch"):
            self.samples.set_epoch(self.passes)
        self.passes += 1
        if self.num_workers == 0:
            chunks = ((torch.as_tensor(image).unsqueeze(0), torch.tensor([int(label)]))
                      for image, label in self.samples)
        else:
            from torch.utils.data import DataLoader

            chunks = iter(DataLoader(self.samples, batch_size=batch_size,
                                     num_workers=self.num_workers, pin_memory=False))
        xs: list[torch.Tensor] = []
        ys: list[torch.Tensor] = []
        held = 0
        for x, y in chunks:
            xs.append(x)
            ys.append(torch.as_tensor(y, dtype=torch.long))
            held += len(ys[-1])
            while held >= batch_size:
                x_all, y_all = torch.cat(xs), torch.cat(ys)
                yield x_all[:batch_size], y_all[:batch_size]
                xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
                held -= batch_size

    def take(self, n: int) -> Batch:
        """``n`` samples from a pass over the stream kept apart from training's: each call goes
        on where the last one stopped, so successive calls (SkewScout's rounds) see successive
        samples, not the stream's head again. A call that reaches the end starts the pass over
        and takes from its beginning; a stream shorter than ``n`` gives all it holds."""
        fresh = self._probe is None
        if fresh:
            self._probe = iter(self.samples)
        head = list(itertools.islice(self._probe, n))    # decodes no sample past the n
        if len(head) < n:
            self._probe = None
            if not fresh:
                return self.take(n)
        got = materialize(head)
        return got.x, got.y


@dataclass(frozen=True)
class StudyDataset:
    """A training set, a label-balanced validation set and what a model needs to know."""

    name: str
    train: PartitionData
    val: PartitionData
    num_classes: int
    in_channels: int
    image_size: int


DIGITS_IMAGE_SIZE = 16   # digits' default side (upsampled from 8x8) when a caller gives none


def load_digits_dataset(image_size: int = DIGITS_IMAGE_SIZE, val_fraction: float = 0.2,
                        seed: int = 0) -> StudyDataset:
    """scikit-learn's digits (1,797 8x8 images, 10 classes), resized, normalised, split.

    The split is stratified (label-balanced validation set) and fixed by ``seed``; images are
    bilinearly resized to ``image_size`` and standardised with the training set's mean and std.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    if image_size != 8:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    y = torch.tensor(digits.target, dtype=torch.long)
    train_idx, val_idx = train_test_split(np.arange(len(y)), test_size=val_fraction,
                                          stratify=digits.target, random_state=seed)
    mean, std = x[train_idx].mean(), x[train_idx].std()
    x = (x - mean) / std
    data = PartitionData(x, y)
    return StudyDataset("digits", data.subset(np.sort(train_idx)), data.subset(np.sort(val_idx)),
                        num_classes=10, in_channels=1, image_size=image_size)


CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def load_cifar10(root: str | Path) -> StudyDataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (torchvision's pickle format), normalised.

    Read directly (no download, no checksum, so tests can build a tiny folder); the test set is
    the validation set, as in the paper. No augmentation (docs/reference.md §3).
    """
    folder = Path(root) / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Download it once with "
            f"torchvision.datasets.CIFAR10({str(root)!r}, download=True) on a networked machine.")
    train = _read_cifar_batches([folder / n for n in names[:5]])
    val = _read_cifar_batches([folder / names[5]])
    return StudyDataset("cifar10", train, val, num_classes=10, in_channels=3, image_size=32)


def _read_cifar_batches(paths: Sequence[Path]) -> PartitionData:
    xs, ys = [], []
    for path in paths:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="latin1")
        xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    return PartitionData((x - mean) / std, torch.tensor(ys, dtype=torch.long))


def split_partitions(data: PartitionData,
                     indices: Sequence[np.ndarray | Sequence[int]]) -> list[PartitionData]:
    """One :class:`PartitionData` per index array (``skewtools.partition(...).indices``)."""
    return [data.subset(index) for index in indices]


def materialize(samples: Iterable[tuple[Any, Any]], limit: int | None = None) -> PartitionData:
    """Load (up to ``limit``) ``(image, label)`` pairs into memory, e.g. a validation split."""
    xs, ys = [], []
    for image, label in itertools.islice(samples, limit):   # reads no sample past the limit
        xs.append(torch.as_tensor(image))
        ys.append(int(label))
    if not ys:
        raise ValueError("no samples to materialize: the sample stream is empty")
    return PartitionData(torch.stack(xs), torch.tensor(ys, dtype=torch.long))
