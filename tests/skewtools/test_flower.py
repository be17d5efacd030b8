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


def _manifest(tmp_path, keyed: bool):
    """A parquet dataset of 60 rows in 3 "continents", loadable by FederatedDataset offline."""
    import pandas as pd

    labels = np.arange(60) % 5
    frame = pd.DataFrame({"x": range(60), "label": labels,
                          "continent": np.repeat(["Africa", "Asia", "Europe"], 20)})
    if keyed:
        frame.insert(0, "key", [f"fm{1000 + i}" for i in range(60)])
    path = tmp_path / ("keyed.parquet" if keyed else "plain.parquet")
    frame.to_parquet(path)
    return frame, path


def _federated(path, partitioner, tmp_path, shuffle: bool):
    from flwr_datasets import FederatedDataset

    return FederatedDataset(dataset="parquet", data_files={"train": str(path)},
                            partitioners={"train": partitioner}, shuffle=shuffle, seed=7,
                            cache_dir=str(tmp_path / "hf-cache"))


@pytest.mark.parametrize("explicit_keys", [True, False])
def test_shuffled_federated_dataset_gets_each_partition_by_key(tmp_path, explicit_keys):
    """FederatedDataset shuffles by default: row positions would give each continent mostly
    other continents' rows. With a key column each partition is exactly its own rows."""
    frame, path = _manifest(tmp_path, keyed=True)
    p = partition("by_attribute", frame, attribute="continent")
    fl = as_flower_partitioner(p, keys=frame["key"] if explicit_keys else None)
    fds = _federated(path, fl, tmp_path, shuffle=True)
    for pid, name in enumerate(p.names):
        rows = fds.load_partition(pid, "train")
        assert set(rows["continent"]) == {name}
        assert sorted(rows["key"]) == sorted(frame["key"][frame["continent"] == name])


def test_shuffled_dataset_without_keys_fails_loudly(tmp_path):
    frame, path = _manifest(tmp_path, keyed=False)
    p = partition("by_attribute", frame, attribute="continent")
    fds = _federated(path, as_flower_partitioner(p), tmp_path, shuffle=True)
    with pytest.raises(ValueError, match="shuffle=False"):
        fds.load_partition(0, "train")
    # Unshuffled, row positions are right.
    fds = _federated(path, as_flower_partitioner(p), tmp_path, shuffle=False)
    assert set(fds.load_partition(1, "train")["continent"]) == {p.names[1]}


def test_keys_must_all_be_found(tmp_path):
    frame, _ = _manifest(tmp_path, keyed=True)
    p = partition("by_attribute", frame, attribute="continent")
    fl = as_flower_partitioner(p, keys=[f"other{i}" for i in range(60)])
    fl.dataset = datasets.Dataset.from_pandas(frame)
    with pytest.raises(ValueError, match="not in the dataset's 'key' column"):
        fl.load_partition(0)
