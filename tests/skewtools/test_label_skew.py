import numpy as np
import pytest

from skewtools import partition


def test_fraction_one_is_exactly_y_mod_n():
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 0])
    p = partition("label_skew", labels, num_partitions=5, noniid_fraction=1.0, seed=7)
    assert np.array_equal(p.assignment(), labels % 5)


def test_ten_labels_five_partitions_hold_two_classes_each():
    p = partition("label_skew", np.arange(10), num_partitions=5, noniid_fraction=1.0, seed=0)
    assert [ix.tolist() for ix in p.indices] == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]


def test_fraction_zero_is_iid_with_the_same_seed():
    labels = np.repeat(np.arange(10), 7)
    a = partition("label_skew", labels, num_partitions=4, noniid_fraction=0.0, seed=3)
    b = partition("iid", labels, num_partitions=4, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a.indices, b.indices, strict=True))


def test_hand_counts_with_half_rounding_up():
    # 5 samples of class 0, x = 0.5: round(2.5) = 3 go to owner 0; the other 2 are dealt 1 + 1.
    p = partition("label_skew", np.zeros(5, dtype=int), num_partitions=2, noniid_fraction=0.5)
    assert p.sizes.tolist() == [4, 1]


def test_fraction_sets_the_share_each_owner_gets():
    labels = np.repeat(np.arange(10), 100)  # 10 classes x 100
    p = partition("label_skew", labels, num_partitions=5, noniid_fraction=0.6, seed=0)
    assert p.sizes.tolist() == [200] * 5  # 2 x 60 own + 80 of the 400 dealt
    for pid, ix in enumerate(p.indices):
        own = np.isin(labels[ix], [pid, pid + 5]).sum()
        # 120 from the non-IID part plus the IID part's share of the owned classes (~16).
        assert 120 <= own <= 150
        assert len(np.unique(labels[ix])) == 10


def test_string_labels_use_rank_owners():
    labels = np.array(["cat", "dog", "ant", "cat", "ant", "dog"])
    p = partition("label_skew", labels, num_partitions=3, noniid_fraction=1.0)
    assert [sorted(set(labels[ix])) for ix in p.indices] == [["ant"], ["cat"], ["dog"]]


@pytest.mark.parametrize("bad", [-0.1, 1.5, "0.5"])
def test_rejects_fraction_outside_unit_interval(bad):
    with pytest.raises(ValueError, match="noniid_fraction"):
        partition("label_skew", [0, 1], num_partitions=2, noniid_fraction=bad)
