import numpy as np
import pytest

from skewtools import Partitioning


def _p() -> Partitioning:
    return Partitioning(
        indices=(np.array([0, 3]), np.array([4, 1])),
        names=("a", "b"),
        scheme="hand",
        params={"seed": np.int64(3), "sizes": (1, 2)},
        num_samples=6,
    )


def test_indices_are_sorted_int64_and_dropped_counted():
    p = _p()
    assert p.indices[1].tolist() == [1, 4]
    assert p.indices[1].dtype == np.int64
    assert p.sizes.tolist() == [2, 2]
    assert p.dropped == 2
    assert p.assignment().tolist() == [0, 1, -1, 0, 1, -1]


@pytest.mark.parametrize("suffix", [".json", ".parquet"])
def test_save_load_round_trip(tmp_path, suffix):
    p = _p()
    path = tmp_path / f"p{suffix}"
    p.save(path)
    q = Partitioning.load(path)
    assert q == p
    assert q.params == {"seed": 3, "sizes": [1, 2]}
    assert q.num_samples == 6


def test_equality_sees_index_differences():
    p = _p()
    q = Partitioning((np.array([0, 3]), np.array([1, 5])), ("a", "b"), "hand", p.params, 6)
    assert p != q


def test_rejects_a_sample_in_two_partitions():
    with pytest.raises(ValueError, match="at most one"):
        Partitioning((np.array([0, 1]), np.array([1])), ("a", "b"), "hand", num_samples=3)
    with pytest.raises(ValueError, match="at most one"):
        Partitioning((np.array([2, 2]),), ("a",), "hand", num_samples=3)


def test_rejects_out_of_range_and_duplicate_names():
    with pytest.raises(ValueError, match="outside"):
        Partitioning((np.array([0, 3]),), ("a",), "hand", num_samples=3)
    with pytest.raises(ValueError, match="unique"):
        Partitioning((np.array([0]), np.array([1])), ("a", "a"), "hand", num_samples=3)
