import numpy as np
import pytest

from skewtools import partition
from skewtools.partitioners.dirichlet import split_counts

LABELS = np.repeat(np.arange(10), 100)


def test_split_counts_by_hand():
    props = np.array([[0.5, 0.5], [0.25, 0.75], [1.0, 0.0]])
    sizes = split_counts(props, np.array([4, 4, 3]))
    assert sizes.tolist() == [[2, 2], [1, 3], [3, 0]]


def test_large_alpha_gives_equal_shares():
    p = partition("dirichlet", LABELS, num_partitions=5, alpha=1e6, seed=0)
    for ix in p.indices:
        assert np.all(np.abs(np.bincount(LABELS[ix], minlength=10) - 20) <= 1)


def _mean_top_share(alpha: float) -> float:
    p = partition("dirichlet", LABELS, num_partitions=5, alpha=alpha, min_partition_size=0)
    counts = np.stack([np.bincount(LABELS[ix], minlength=10) for ix in p.indices])
    return float(counts.max(axis=0).mean() / 100)


def test_smaller_alpha_means_more_skew():
    # alpha = 0.01: a class almost always sits in one partition; alpha = 100: ~1/5 everywhere.
    assert _mean_top_share(0.01) > 0.85
    assert _mean_top_share(1.0) < _mean_top_share(0.01)
    assert _mean_top_share(100.0) < 0.3


def test_min_partition_size_is_met():
    p = partition("dirichlet", LABELS, num_partitions=5, alpha=0.5, min_partition_size=100)
    assert p.sizes.min() >= 100


def test_impossible_min_size_fails_at_once_and_explains():
    with pytest.raises(ValueError, match="impossible.*lower min_partition_size"):
        partition("dirichlet", np.arange(10), num_partitions=5, alpha=1.0, min_partition_size=3)


def test_exhausted_retries_explain_what_to_change():
    with pytest.raises(ValueError, match="no draw in 3 .*raise alpha"):
        partition(
            "dirichlet", LABELS, num_partitions=5, alpha=0.01, min_partition_size=190,
            max_retries=3,
        )  # fmt: skip


@pytest.mark.parametrize("max_retries,attempts", [(0, "1 attempt "), (2, "2 attempts ")])
def test_exhausted_retries_count_the_draws_actually_made(max_retries, attempts):
    with pytest.raises(ValueError, match=f"no draw in {attempts}.*lower min_partition_size.*"
                                         f"raise max_retries \\(now {max_retries}\\)"):
        partition(
            "dirichlet", LABELS, num_partitions=5, alpha=0.01, min_partition_size=190,
            max_retries=max_retries,
        )  # fmt: skip


def test_rejects_non_positive_alpha():
    with pytest.raises(ValueError, match="alpha"):
        partition("dirichlet", LABELS, num_partitions=5, alpha=0)
