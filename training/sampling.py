"""Feeding the ``k`` local partitions one stacked ``[k, b, ...]`` batch per step
(docs/reference.md §3).

On a GPU every step is bound by per-op host overhead, so the data path must cost a few ops per
step, whatever ``k``: :class:`DeviceBatches` keeps every in-memory partition on the device in one
tensor and gathers a step's ``k`` batches with one index. The indices are the same as
:meth:`PartitionData.batches` draws (shuffled epochs from each partition's own
``numpy.random.Generator``), computed on the host ``block`` steps at a time and sent in one
(pinned, non-blocking) copy, so runs stay identical to the per-partition path and the host never
waits for the device. :class:`StreamedBatches` serves streamed partitions (``BatchSource``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from training.datasets import Batch, BatchSource, PartitionData, index_batches


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device``; from the host to a GPU through pinned memory, without blocking."""
    if device.type == "cuda" and t.device.type == "cpu":
        return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
    return t.to(device)


class DeviceBatches:
    """Stacked batches of in-memory partitions, resident and gathered on ``device``."""

    def __init__(self, parts: Sequence[PartitionData], batch_size: int,
                 rngs: Sequence[np.random.Generator], device: str | torch.device,
                 block: int = 64) -> None:
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        self.device = torch.device(device)
        sizes = [len(p) for p in parts]
        small = [i for i, n in enumerate(sizes) if n < batch_size]
        if small:   # found now, not when the partition first trains (maybe rounds later)
            raise ValueError(f"{len(small)} partition(s) (e.g. {small[:5]}) hold fewer than the "
                             f"{batch_size} samples each partition draws per step; raise "
                             "min_partition_size, lower batch_size, or use fewer partitions")
        self.offsets = np.cumsum([0, *sizes[:-1]])
        # one tensor for all partitions (a copy; a single partition is used as it is)
        self.x = (parts[0].x if len(parts) == 1 else torch.cat([p.x for p in parts])).to(
            self.device)
        self.y = (parts[0].y if len(parts) == 1 else torch.cat([p.y for p in parts])).to(
            self.device)
        self._streams = [index_batches(n, batch_size, rng) for n, rng in zip(sizes, rngs,
                                                                              strict=True)]
        self.block = block
        self._index: torch.Tensor | None = None   # [block, k, b] on the device
        self._next = block
        self.refills = 0

    @property
    def nbytes(self) -> int:
        """Device memory the resident data takes."""
        return self.x.nbytes + self.y.nbytes

    def _refill(self) -> None:
        rows = [np.stack([next(stream) for _ in range(self.block)]) + offset
                for stream, offset in zip(self._streams, self.offsets, strict=True)]
        host = torch.from_numpy(np.stack(rows, axis=1))            # [block, k, b]
        self._index = to_device(host, self.device)
        self._next = 0
        self.refills += 1

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self._next == self.block:
            self._refill()
        index = self._index[self._next]
        self._next += 1
        return self.x[index], self.y[index]

    def take(self, local: Sequence[int]) -> Batch:
        """One batch of each of the partitions at positions ``local`` only (partial
        participation): the others' streams do not move, so a partition's batches are the same
        whichever rounds it sits out. One small index copy per step; not mixed with
        iteration (which draws ``block`` steps of every partition ahead)."""
        rows = np.stack([next(self._streams[i]) + self.offsets[i] for i in local])
        index = to_device(torch.from_numpy(rows), self.device)
        return self.x[index], self.y[index]


class StreamedBatches:
    """Stacked batches of any batch sources (e.g. Flickr-Mammal streams), copied to ``device``."""

    def __init__(self, sources: Sequence[PartitionData | BatchSource], batch_size: int,
                 rngs: Sequence[np.random.Generator], device: str | torch.device) -> None:
        self.device = torch.device(device)
        self._streams = [s.batches(batch_size, rng) for s, rng in zip(sources, rngs, strict=True)]

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        return self._stack([next(it) for it in self._streams])

    def take(self, local: Sequence[int]) -> Batch:
        """One batch of each of the sources at positions ``local`` only (partial participation)."""
        return self._stack([next(self._streams[i]) for i in local])

    def _stack(self, batches: list[Batch]) -> Batch:
        if self.device.type == "cuda":   # each (loader-pinned) batch goes over, stacked there
            return (torch.stack([to_device(b[0], self.device) for b in batches]),
                    torch.stack([to_device(b[1], self.device) for b in batches]))
        return (to_device(torch.stack([b[0] for b in batches]), self.device),
                to_device(torch.stack([b[1] for b in batches]), self.device))


def stacked_batches(sources: Sequence[PartitionData | BatchSource], batch_size: int,
                    rngs: Sequence[np.random.Generator],
                    device: str | torch.device) -> DeviceBatches | StreamedBatches:
    """Device-resident sampling when every source is in memory, else streamed batches."""
    if all(isinstance(s, PartitionData) for s in sources):
        return DeviceBatches(sources, batch_size, rngs, device)
    return StreamedBatches(sources, batch_size, rngs, device)
