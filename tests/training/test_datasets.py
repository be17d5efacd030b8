"""Study datasets: digits, a fake CIFAR-10 folder, epoch sampling, partition splitting, and the
Flickr-Mammal batch-source adapter."""

import pickle

import numpy as np
import pytest
import torch

from training.datasets import (
    IterableBatchSource,
    PartitionData,
    load_cifar10,
    load_digits_dataset,
    split_partitions,
)


def test_digits_split_is_stratified_normalised_and_fixed_by_seed():
    data = load_digits_dataset(image_size=16, seed=0)
    assert data.train.x.shape[1:] == (1, 16, 16)
    assert len(data.train) + len(data.val) == 1797
    counts = torch.bincount(data.val.y, minlength=10)
    assert counts.max() - counts.min() <= 2 and len(data.val) == 360   # classes hold 174-183
    assert abs(float(data.train.x.mean())) < 1e-4
    assert float(data.train.x.std()) == pytest.approx(1.0, abs=1e-3)
    again, other = load_digits_dataset(seed=0), load_digits_dataset(seed=1)
    assert torch.equal(again.val.y, data.val.y)
    assert not torch.equal(other.val.x, data.val.x)
    assert load_digits_dataset(image_size=8).train.x.shape[1:] == (1, 8, 8)


def test_batches_are_shuffled_epochs():
    data = PartitionData(torch.arange(10).float().unsqueeze(1), torch.arange(10))
    stream = data.batches(3, np.random.default_rng(0))
    epoch = torch.cat([next(stream)[1] for _ in range(3)])
    assert len(set(epoch.tolist())) == 9   # 9 distinct of 10: the tail of 1 is dropped
    again = data.batches(3, np.random.default_rng(0))
    assert torch.equal(torch.cat([next(again)[1] for _ in range(3)]), epoch)
    x, y = next(data.batches(4, np.random.default_rng(1)))
    assert torch.equal(x[:, 0].long(), y)   # x and y stay paired
    with pytest.raises(ValueError, match="batch size 11 needs 1..10"):
        next(data.batches(11, np.random.default_rng(0)))


def test_split_partitions():
    data = PartitionData(torch.arange(6).float(), torch.tensor([0, 1, 2, 0, 1, 2]))
    parts = split_partitions(data, [np.array([0, 3]), np.array([1, 2, 4, 5])])
    assert parts[0].y.tolist() == [0, 0]
    assert parts[1].x.tolist() == [1.0, 2.0, 4.0, 5.0]


def write_fake_cifar(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": rng.integers(0, 10, per_batch).tolist()}
        with open(folder / name, "wb") as handle:
            pickle.dump(entry, handle)
    return entry


def test_cifar10_from_a_torchvision_folder(tmp_path):
    last = write_fake_cifar(tmp_path)
    data = load_cifar10(tmp_path)
    assert data.train.x.shape == (20, 3, 32, 32) and len(data.val) == 4
    assert data.val.y.tolist() == last["labels"]
    red = last["data"][0, :1024].reshape(32, 32) / 255.0
    assert torch.allclose(data.val.x[0, 0], torch.tensor((red - 0.4914) / 0.2470).float(),
                          atol=1e-5)


def test_cifar10_missing_says_how_to_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_cifar10(tmp_path)


def test_iterable_source_restarts_and_rejects_tiny_streams():
    samples = [(torch.full((2,), float(i)), i) for i in range(5)]
    stream = IterableBatchSource(samples).batches(2, np.random.default_rng(0))
    labels = [next(stream)[1].tolist() for _ in range(3)]
    assert labels == [[0, 1], [2, 3], [0, 1]]   # the tail (4) is dropped, then it restarts
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(IterableBatchSource(samples[:1]).batches(2, np.random.default_rng(0)))


def test_iterable_source_takes_successive_samples_of_its_stream():
    samples = [(torch.full((2,), float(i)), i) for i in range(5)]
    source = IterableBatchSource(samples)
    x, y = source.take(2)
    assert y.tolist() == [0, 1] and x.shape == (2, 2) and x[1].tolist() == [1.0, 1.0]
    assert source.take(2)[1].tolist() == [2, 3]             # goes on where it stopped
    assert source.take(2)[1].tolist() == [0, 1]             # past the end: from the start
    assert source.take(5)[1].tolist() == [0, 1, 2, 3, 4]    # (the pass before ended at 1)
    assert source.take(1)[1].tolist() == [0]
    assert IterableBatchSource(samples).take(10)[1].tolist() == [0, 1, 2, 3, 4]   # all it has
    training = source.batches(2, np.random.default_rng(0))
    assert next(training)[1].tolist() == [0, 1] and source.take(1)[1].tolist() == [1]
    with pytest.raises(ValueError, match="empty"):
        IterableBatchSource([]).take(1)


def test_skewtools_label_skew_gives_two_classes_per_partition():
    skewtools = pytest.importorskip("skewtools")
    data = load_digits_dataset(image_size=8)
    split = skewtools.partition("label_skew", data.train.y.numpy(), num_partitions=5,
                                noniid_fraction=1.0, seed=0)
    parts = split_partitions(data.train, split.indices)
    assert sum(len(p) for p in parts) == len(data.train)
    for i, part in enumerate(parts):
        assert sorted(set(part.y.tolist())) == [i, i + 5]   # label y -> partition y % N
