"""The shared data/partitioning length check (skewtools/_checks.py) and its callers' messages."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import TensorDataset

from skewtools import count_matrix, partition
from skewtools._checks import check_aligned
from skewtools.loaders import partition_subsets, plan_partition

P = partition("iid", np.arange(6) % 2, num_partitions=2, seed=0)


def test_matching_length_passes_and_a_mismatch_says_both_counts():
    check_aligned(6, P, "dataset has {n} rows")
    with pytest.raises(ValueError) as err:
        check_aligned(5, P, "dataset has {n} rows")
    assert str(err.value) == "dataset has 5 rows but the partitioning was made from 6"
    with pytest.raises(ValueError) as err:
        check_aligned(7, P, "{n} labels", "use the same labels")
    assert str(err.value) == "7 labels but the partitioning was made from 6; use the same labels"


def test_callers_keep_their_messages():
    with pytest.raises(ValueError) as err:
        count_matrix(P, np.arange(5) % 2)
    assert str(err.value) == "5 labels but the partitioning was made from 6"
    with pytest.raises(ValueError) as err:
        partition_subsets(TensorDataset(torch.zeros(4)), P)
    assert str(err.value) == ("dataset has 4 samples but the partitioning was made from 6; "
                              "partition this dataset's own labels")
    index = pd.DataFrame({"key": list("abc"), "shard": ["s.tar"] * 3})
    with pytest.raises(ValueError) as err:
        plan_partition(index, P, 0, "shards")
    assert str(err.value) == ("index has 3 rows but the partitioning was made from 6; "
                              "pass the same manifest rows, in the same order")
