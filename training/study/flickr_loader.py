"""One persistent DataLoader per streamed partition (docs/reference.md §3: a partition reads only
its own shards).

:class:`~training.datasets.IterableBatchSource` builds a new ``DataLoader`` for every pass over
its stream, so with ``num_workers > 0`` each pass spawns (and then joins) that many worker
processes. A Flickr-Mammal partition of a few hundred photos makes a pass every few steps; on the
48-photo shards of ``benchmarks/gpu_check.py`` a pass is one batch, and respawning 4 workers cost
4.6 s per training step. :class:`PersistentBatchSource` keeps one loader with
``persistent_workers=True`` for the whole run: each pass is a new epoch of the same workers,
which read the epoch through the dataset's shared-memory counter
(``GeoShardDataset.set_epoch``), so every pass still comes in a new order. With
``pin_memory=True`` the loader's pin-memory thread pins each batch as it arrives, overlapping
training, instead of the training loop pinning a stacked batch every step; a batch that arrives
with exactly ``batch_size`` samples is handed on as it came (still pinned). SkewScout's checks
(``take``) keep their own pass in this process, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader

from training.datasets import Batch, IterableBatchSource

log = logging.getLogger(__name__)


class PersistentBatchSource(IterableBatchSource):
    """An :class:`IterableBatchSource` whose worker processes live as long as the source.

    ``pin_memory=None`` pins when CUDA is available. ``loaders_built`` counts the DataLoaders
    made (one per batch size asked for; the study asks for one).
    """

    def __init__(self, samples: Iterable[tuple[Any, Any]], num_workers: int = 0,
                 pin_memory: bool | None = None, prefetch_factor: int = 2) -> None:
        super().__init__(samples, num_workers)
        if prefetch_factor < 1:
            raise ValueError(f"prefetch_factor={prefetch_factor}: give at least 1 batch "
                             "per worker")
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.prefetch_factor = prefetch_factor
        self.loaders_built = 0
        self._loader: DataLoader | None = None
        self._loader_batch = 0

    def _loader_for(self, batch_size: int) -> DataLoader:
        if self._loader is None or self._loader_batch != batch_size:
            self.close()
            self._loader = DataLoader(self.samples, batch_size=batch_size,
                                      num_workers=self.num_workers, persistent_workers=True,
                                      pin_memory=self.pin_memory,
                                      prefetch_factor=self.prefetch_factor)
            self._loader_batch = batch_size
            self.loaders_built += 1
        return self._loader

    def _pass(self, batch_size: int) -> Iterator[Batch]:
        if self.num_workers == 0:
            yield from super()._pass(batch_size)
            return
        # the epoch is set before iter(): persistent workers start the pass (and read the
        # shared counter) when the loader's iterator is reset
        if hasattr(self.samples, "set_epoch"):
            self.samples.set_epoch(self.passes)
        self.passes += 1
        yield from recut(iter(self._loader_for(batch_size)), batch_size)

    def close(self) -> None:
        """Stop the worker processes (they also stop when the source is collected)."""
        if self._loader is not None:
            iterator = getattr(self._loader, "_iterator", None)
            if iterator is not None and hasattr(iterator, "_shutdown_workers"):
                iterator._shutdown_workers()
            self._loader = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown: nothing left to stop
            log.debug("could not stop a loader's workers", exc_info=True)


def recut(chunks: Iterator[tuple[Any, Any]], batch_size: int) -> Iterator[Batch]:
    """Batches of exactly ``batch_size`` from the workers' chunks (a worker's last chunk of a
    pass is short); a chunk that is already a whole batch passes through untouched, so a
    pinned one stays pinned. An incomplete tail is dropped."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    held = 0
    for x, y in chunks:
        y = torch.as_tensor(y, dtype=torch.long)
        if held == 0 and len(y) == batch_size:
            yield x, y
            continue
        xs.append(x)
        ys.append(y)
        held += len(y)
        while held >= batch_size:
            x_all, y_all = torch.cat(xs), torch.cat(ys)
            yield x_all[:batch_size], y_all[:batch_size]
            xs, ys = [x_all[batch_size:]], [y_all[batch_size:]]
            held -= batch_size
