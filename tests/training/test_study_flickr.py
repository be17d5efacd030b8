"""Flickr-Mammal for studies: partitions come through ``flickr_batch_sources`` (fake shards)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import flickr_mammal
from training.study_flickr import flickr_partitions

GEO = {"Africa": [7, 7, 7], "Americas": [1, 1], "Europe": [2, 2, 2, 2]}


@pytest.fixture
def fake_shards(monkeypatch):
    """``load_partitions`` over labels (images are the label as a 1-pixel tensor); logs calls."""
    calls = []

    def fake_load_partitions(root, by, split, transform, **options):
        calls.append({"root": root, "by": by, "split": split, **options})
        assert transform is not None            # the study's resize/crop/normalise
        groups = GEO if by is not None else {"all": [y for ys in GEO.values() for y in ys]}
        if split == "val":
            groups = {"all": [5, 6, 7]}
        return {name: [(torch.full((1,), float(y)), y) for y in ys]
                for name, ys in groups.items()}

    monkeypatch.setattr(flickr_mammal, "load_partitions", fake_load_partitions, raising=False)
    return calls


def labels(source, batch_size: int) -> list[int]:
    return next(source.batches(batch_size, np.random.default_rng(0)))[1].tolist()


def test_geographic_partitions_are_the_first_n_in_name_order(fake_shards):
    dataset = {"root": "shards", "val_samples": 2}
    train, val = flickr_partitions(dataset, num_partitions=2, noniid_fraction=1.0, seed=3)
    assert [labels(s, 2) for s in train] == [[7, 7], [1, 1]]        # Africa, Americas
    assert val.y.tolist() == [5, 6]                                   # val_samples=2
    assert fake_shards[0] == {"root": "shards", "by": "continent", "split": "train",
                              "shuffle_buffer": 1000, "seed": 3}
    assert fake_shards[1] == {"root": "shards", "by": None, "split": "val"}
    with pytest.raises(ValueError, match="3 geographic partitions .* lower it"):
        flickr_partitions(dataset, num_partitions=4, noniid_fraction=1.0, seed=3)


def test_iid_control_deals_the_whole_stream(fake_shards):
    train, _ = flickr_partitions({"root": "r", "partition_by": "country"}, 3, 0.0, seed=1)
    # the stream 7 7 7 1 1 2 2 2 2 dealt round robin to 3 partitions
    assert [labels(s, 3) for s in train] == [[7, 1, 2], [7, 1, 2], [7, 2, 2]]
    assert fake_shards[0]["by"] is None and fake_shards[0]["seed"] == 1


def test_other_fractions_are_refused(fake_shards):
    with pytest.raises(ValueError, match="use 1.0 .* or 0.0"):
        flickr_partitions({"root": "r"}, 2, 0.5, seed=0)
