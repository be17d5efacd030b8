import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from skewtools import partition
from skewtools.loaders import partition_subset, partition_subsets


def test_subsets_follow_the_partitioning():
    labels = np.arange(10) % 5
    data = TensorDataset(torch.arange(10), torch.as_tensor(labels))
    p = partition("label_skew", labels, num_partitions=5, noniid_fraction=1.0)
    subsets = partition_subsets(data, p)
    assert [[int(x) for x, _ in s] for s in subsets] == [[0, 5], [1, 6], [2, 7], [3, 8], [4, 9]]
    assert [int(x) for x, _ in partition_subset(data, p, "3")] == [3, 8]


def test_length_mismatch_is_an_error():
    p = partition("iid", np.zeros(4, int), num_partitions=2)
    with pytest.raises(ValueError, match="partition this dataset"):
        partition_subsets(TensorDataset(torch.arange(5)), p)
