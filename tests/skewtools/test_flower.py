import numpy as np
import pytest

from skewtools import partition
from skewtools.loaders import as_flower_partitioner

datasets = pytest.importorskip("datasets")
pytest.importorskip("flwr_datasets")


def test_flower_partitioner_serves_the_partitions():
    from flwr_datasets.partitioner import Partitioner

    labels = np.arange(12) % 4
    ds = datasets.Dataset.from_dict({"x": list(range(12)), "label": labels.tolist()})
    p = partition("label_skew", labels, num_partitions=4, noniid_fraction=1.0)
    fl = as_flower_partitioner(p)
    assert isinstance(fl, Partitioner)
    fl.dataset = ds
    assert fl.num_partitions == 4
    assert fl.load_partition(1)["x"] == [1, 5, 9]
    assert set(fl.load_partition(3)["label"]) == {3}
