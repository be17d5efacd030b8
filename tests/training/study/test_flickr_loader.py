"""One persistent DataLoader per streamed partition: workers survive passes, every pass still
comes in a new order, whole batches pass through untouched."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch.utils.data import IterableDataset, get_worker_info

from training.datasets import IterableBatchSource
from training.study.flickr_loader import PersistentBatchSource, recut


class EpochStream(IterableDataset):
    """8 samples split between workers; the sample value is ``epoch * 100 + i`` and the label
    the reading process's id, so a test sees both the epoch and which process read it."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __iter__(self):
        info = get_worker_info()
        ids = range(8) if info is None else range(info.id, 8, info.num_workers)
        return iter([(torch.tensor([float(int(self._epoch) * 100 + i)]), os.getpid())
                     for i in ids])


def passes(source, n, batch_size=4):
    stream = source.batches(batch_size, np.random.default_rng(0))
    return [next(stream) for _ in range(n)]


def test_workers_live_across_passes_and_each_pass_reads_its_epoch():
    source = PersistentBatchSource(EpochStream(), num_workers=2, pin_memory=False)
    batches = passes(source, 6)                      # 8 samples = 2 batches a pass: 3 passes
    pids = {int(p) for _, y in batches for p in y}
    assert len(pids) == 2 and os.getpid() not in pids    # the same two workers throughout
    epochs = [sorted({int(v) // 100 for v in x.flatten()}) for x, _ in batches]
    assert epochs == [[0], [0], [1], [1], [2], [2]]
    assert source.loaders_built == 1 and source.passes == 3
    source.close()


def test_the_per_pass_loader_respawns_its_workers():
    # what PersistentBatchSource replaces: a new loader, new worker processes, every pass
    batches = passes(IterableBatchSource(EpochStream(), num_workers=2), 6)
    assert len({int(p) for _, y in batches for p in y}) > 2


def test_without_workers_it_reads_in_this_process():
    source = PersistentBatchSource(EpochStream(), num_workers=0)
    batches = passes(source, 4)
    assert {int(p) for _, y in batches for p in y} == {os.getpid()}
    assert source.loaders_built == 0


def test_recut_passes_whole_batches_through_and_cuts_the_rest():
    whole = (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long))
    out = list(recut(iter([whole, (torch.ones(3, 1), torch.ones(3)),
                           (torch.ones(3, 1), torch.ones(3))]), 4))
    assert out[0][0] is whole[0]                     # untouched (a pinned batch stays pinned)
    assert [len(y) for _, y in out] == [4, 4]        # 3 + 3 -> one batch of 4, tail dropped


def test_prefetch_factor_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="prefetch_factor=0: give at least 1"):
        PersistentBatchSource(EpochStream(), num_workers=1, prefetch_factor=0)


def test_the_studys_flickr_sources_are_persistent(monkeypatch):
    import flickr_mammal
    from training.study.flickr import flickr_batch_sources

    monkeypatch.setattr(flickr_mammal, "load_partitions",
                        lambda root, **kw: {"Africa": EpochStream()})
    sources = flickr_batch_sources("unused", num_workers=2)
    assert isinstance(sources["Africa"], PersistentBatchSource)
