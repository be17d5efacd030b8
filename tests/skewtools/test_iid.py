import numpy as np
import pytest

from skewtools import partition


def test_round_robin_is_the_papers_i_mod_n():
    p = partition("iid", np.zeros(7, dtype=int), num_partitions=3, method="round_robin")
    assert [ix.tolist() for ix in p.indices] == [[0, 3, 6], [1, 4], [2, 5]]


def test_random_is_balanced_covers_everything_and_is_seeded():
    labels = np.repeat(np.arange(4), 25)
    p = partition("iid", labels, num_partitions=3, seed=1)
    assert sorted(p.sizes.tolist()) == [33, 33, 34]
    assert np.array_equal(np.sort(np.concatenate(p.indices)), np.arange(100))
    assert p == partition("iid", labels, num_partitions=3, seed=1)
    assert p != partition("iid", labels, num_partitions=3, seed=2)
    assert p.params == {"num_partitions": 3, "seed": 1, "method": "random"}


def test_rejects_bad_method_and_partitions():
    with pytest.raises(ValueError, match="method"):
        partition("iid", [0, 1], num_partitions=2, method="shuffled")
    with pytest.raises(ValueError, match="num_partitions"):
        partition("iid", [0, 1], num_partitions=0)
