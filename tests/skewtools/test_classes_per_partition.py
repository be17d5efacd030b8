import numpy as np
import pytest

from skewtools import partition

LABELS = np.repeat(np.arange(6), 4)  # 6 classes x 4


def _classes(p, labels=LABELS):
    return [sorted(np.unique(labels[ix]).tolist()) for ix in p.indices]


def test_even_assignment_by_hand():
    p = partition("classes_per_partition", LABELS, num_partitions=3, num_classes_per_partition=2)
    assert _classes(p) == [[0, 1], [2, 3], [4, 5]]
    assert p.sizes.tolist() == [8, 8, 8]


def test_shared_classes_are_split_equally():
    # Partition 0: {0,1,2,3}, 1: {4,5,0,1}, 2: {2,3,4,5}; every class held twice -> 2 + 2.
    p = partition("classes_per_partition", LABELS, num_partitions=3, num_classes_per_partition=4)
    assert _classes(p) == [[0, 1, 2, 3], [0, 1, 4, 5], [2, 3, 4, 5]]
    for ix in p.indices:
        assert set(np.bincount(LABELS[ix]).tolist()) <= {0, 2}


def test_classes_nobody_holds_are_dropped():
    p = partition("classes_per_partition", LABELS, num_partitions=2, num_classes_per_partition=2)
    assert _classes(p) == [[0, 1], [2, 3]]
    assert p.dropped == 8


def test_random_assignment_starts_with_i_mod_c():
    p = partition(
        "classes_per_partition", LABELS, num_partitions=4, num_classes_per_partition=3,
        class_assignment="random", seed=2,
    )  # fmt: skip
    for i, held in enumerate(_classes(p)):
        assert i % 6 in held
        assert len(held) == 3


def test_rejects_more_classes_than_exist():
    with pytest.raises(ValueError, match=r"\[1, 6\]"):
        partition("classes_per_partition", LABELS, num_partitions=2, num_classes_per_partition=7)
