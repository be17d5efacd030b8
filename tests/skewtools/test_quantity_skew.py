import numpy as np
import pandas as pd
import pytest

from skewtools import partition
from skewtools.partitioners.base import apportion


def test_apportion_sums_exactly():
    assert apportion(np.array([1.0, 1.0, 1.0]), 10).tolist() == [4, 3, 3]
    # 3.5, 1.75, 1.75 -> floors 3, 1, 1; the two largest remainders (.75, .75) get the rest
    assert apportion(np.array([0.5, 0.25, 0.25]), 7).tolist() == [3, 2, 2]


def test_power_law_sizes_by_hand():
    # shares 1, 1/2, 1/3, 1/4 of 25/12 -> 48, 24, 16, 12 of 100
    p = partition("quantity_skew", np.zeros(100, int), num_partitions=4, distribution="power_law")
    assert p.sizes.tolist() == [48, 24, 16, 12]
    flat = partition(
        "quantity_skew", np.zeros(100, int), num_partitions=4, distribution="power_law",
        exponent=0,
    )  # fmt: skip
    assert flat.sizes.tolist() == [25] * 4


def test_dirichlet_sizes_vary_and_respect_min_size_without_labels():
    manifest = pd.DataFrame({"owner": np.arange(500)})  # no label column needed
    p = partition("quantity_skew", manifest, num_partitions=5, alpha=0.5, min_partition_size=20)
    assert p.sizes.sum() == 500 and p.sizes.min() >= 20
    assert len(set(p.sizes.tolist())) > 1


def test_impossible_power_law_is_explained():
    with pytest.raises(ValueError, match="min_partition_size"):
        partition(
            "quantity_skew", np.zeros(100, int), num_partitions=10, distribution="power_law",
            exponent=3.0,
        )  # fmt: skip
