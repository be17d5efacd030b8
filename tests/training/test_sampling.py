"""training.sampling: device-resident stacked batches equal the per-partition batches, in a few
ops per step whatever k."""

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from training.datasets import IterableBatchSource, PartitionData
from training.sampling import DeviceBatches, StreamedBatches, stacked_batches


def parts(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [PartitionData(torch.randn(n, 2, 3, generator=gen), torch.randint(0, 9, (n,),
                                                                             generator=gen))
            for n in sizes]


def rngs(k, seed=5):
    return [np.random.default_rng([seed, p]) for p in range(k)]


def test_device_batches_equal_each_partitions_own_batches():
    data = parts([7, 12, 9])
    stacked = DeviceBatches(data, 3, rngs(3), "cpu", block=4)
    own = [p.batches(3, rng) for p, rng in zip(data, rngs(3), strict=True)]
    for _ in range(11):              # several epochs of each partition, across blocks
        x, y = next(stacked)
        batches = [next(it) for it in own]
        assert torch.equal(x, torch.stack([b[0] for b in batches]))
        assert torch.equal(y, torch.stack([b[1] for b in batches]))
    assert stacked.refills == 3      # indices go to the device once per block of steps


class OpCount(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


def test_a_draw_costs_the_same_ops_for_2_or_20_partitions():
    counts = []
    for k in (2, 20):
        batches = DeviceBatches(parts([6] * k), 2, rngs(k), "cpu", block=8)
        next(batches)               # the first draw fills the index block
        with OpCount() as count:
            next(batches)
        counts.append(count.ops)
    assert counts[0] == counts[1] <= 4


def test_streamed_sources_are_stacked():
    data = parts([4, 4])
    source = IterableBatchSource(list(zip(data[1].x, data[1].y.tolist(), strict=True)))
    batches = stacked_batches([data[0], source], 2, rngs(2), "cpu")
    assert isinstance(batches, StreamedBatches)
    x, y = next(batches)
    assert x.shape == (2, 2, 2, 3) and torch.equal(y[1], data[1].y[:2])
    assert isinstance(stacked_batches(data, 2, rngs(2), "cpu"), DeviceBatches)


def test_take_moves_only_the_chosen_partitions_streams():
    data = parts([7, 12, 9])
    for batches in (DeviceBatches(data, 3, rngs(3), "cpu"),
                    StreamedBatches(data, 3, rngs(3), "cpu")):
        own = [p.batches(3, rng) for p, rng in zip(data, rngs(3), strict=True)]
        for chosen in ([0, 2], [1], [0, 1, 2], [2]):
            x, y = batches.take(chosen)
            expected = [next(own[i]) for i in chosen]
            assert torch.equal(x, torch.stack([b[0] for b in expected]))
            assert torch.equal(y, torch.stack([b[1] for b in expected]))


def test_a_partition_smaller_than_its_batch_is_refused_at_once():
    with pytest.raises(ValueError, match=r"1 partition\(s\) \(e.g. \[1\]\) hold fewer than the 5"):
        DeviceBatches(parts([7, 4, 9]), 5, rngs(3), "cpu")
