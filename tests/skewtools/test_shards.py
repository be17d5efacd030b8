import numpy as np
import pytest

from skewtools import partition


def test_each_partition_gets_two_whole_classes_when_shards_are_classes():
    labels = np.repeat(np.arange(10), 3)  # 10 shards of 3 = one class each
    p = partition("shards", labels, num_partitions=5, shards_per_partition=2, seed=4)
    assert p.sizes.tolist() == [6] * 5
    seen = []
    for ix in p.indices:
        classes, counts = np.unique(labels[ix], return_counts=True)
        assert counts.tolist() == [3, 3]
        seen += classes.tolist()
    assert sorted(seen) == list(range(10))


def test_uneven_sizes_differ_by_at_most_one_and_nothing_is_dropped():
    p = partition("shards", np.arange(23) % 4, num_partitions=3, shards_per_partition=2)
    assert p.dropped == 0
    assert p.sizes.max() - p.sizes.min() <= 2


def test_too_many_shards_is_an_error():
    with pytest.raises(ValueError, match="shards need"):
        partition("shards", [0, 1, 2], num_partitions=2, shards_per_partition=2)
