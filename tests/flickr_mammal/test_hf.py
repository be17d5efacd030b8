"""to_hf_dataset: flat typed columns, and flwr-datasets' NaturalIdPartitioner with no glue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.reader import load_partitions
from flickr_mammal.shards import write_shards
from tests.flickr_mammal.geo_samples import geo_records, read_image, width_of

datasets = pytest.importorskip("datasets")

from flickr_mammal.hf import to_hf_dataset  # noqa: E402

UPLOAD = 1_500_000_000   # 2017-07-14 02:40:00 UTC


def dated_records():
    """The geo records with dates and licenses; 1010 is in val, 1011 unplaced."""
    return [r.evolve(split="val" if r.photo_id == "1010" else "train",
                     date_upload=UPLOAD + i, date_taken="2016-05-04 10:20:30" if i else "",
                     license=i % 3) for i, r in enumerate(geo_records())]


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_shards")
    for split in ("train", "val"):
        write_shards(dated_records(), read_image, root, split=split, group_by="continent",
                     max_samples=2, progress=False)
    return root


@pytest.fixture(scope="module")
def train(shard_root, tmp_path_factory):
    return to_hf_dataset(shard_root, "train", cache_dir=tmp_path_factory.mktemp("hf_cache"))


def test_flat_typed_columns(train):
    assert train.features["label"].names == list(CLASS_NAMES)
    assert isinstance(train.features["image"], datasets.Image)
    assert train.features["date_upload"].dtype == "int64"
    assert train.split == "train"
    rows = {r["photo_id"]: r for r in train}
    assert sorted(rows) == [f"10{i:02d}" for i in range(1, 10)]   # no val, no unplaced 1011
    first = rows["1001"]
    assert first["key"] == "fm1001" and first["label"] == 23
    assert (first["continent"], first["subcontinent"], first["country"],
            first["country_code"]) == ("Africa", "Eastern Africa", "Kenya", "KE")
    assert first["latitude"] == pytest.approx(-1.23) and first["longitude"] == pytest.approx(36.79)
    assert first["date_upload"] == UPLOAD                       # Unix seconds, UTC
    assert datetime.fromisoformat(first["date_upload_utc"]) == datetime(2017, 7, 14, 2, 40,
                                                                        tzinfo=UTC)
    assert first["date_upload_utc"].endswith("+00:00")          # the timezone is kept
    assert first["date_taken"] == ""                            # no date
    assert rows["1002"]["date_taken"] == "2016-05-04 10:20:30"  # camera time, no zone
    assert rows["1003"]["license"] == 2 and first["owner"] == "owner"
    assert rows["1003"]["license_name"] == "CC BY-NC 2.0"
    assert first["license_name"] == "All Rights Reserved"
    assert first["image"].size == (width_of(geo_records()[0]), 12)


def test_streaming_yields_the_same_rows(shard_root, train):
    stream = to_hf_dataset(shard_root, "train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    got = [(r["key"], r["label"], r["continent"]) for r in stream]
    assert got == list(zip(train["key"], train["label"], train["continent"], strict=True))


def test_package_level_name_and_missing_extra(shard_root, monkeypatch):
    import sys

    import flickr_mammal

    assert flickr_mammal.to_hf_dataset is to_hf_dataset
    monkeypatch.setitem(sys.modules, "datasets", None)     # as if not installed
    with pytest.raises(ImportError, match=r"pip install -e '\.\[hf\]'"):
        to_hf_dataset(shard_root, "train")


def test_unknown_split_is_an_error(shard_root):
    with pytest.raises(ValueError, match="splits there"):
        to_hf_dataset(shard_root, "test")


def test_natural_id_partitioner_equals_load_partitions(shard_root, train):
    pytest.importorskip("flwr_datasets")
    from flwr_datasets.partitioner import NaturalIdPartitioner

    partitioner = NaturalIdPartitioner(partition_by="continent")
    partitioner.dataset = train
    parts = load_partitions(shard_root, by="continent")
    assert partitioner.num_partitions == len(parts) == 3
    assert list(partitioner.partition_id_to_natural_id.values()) == list(parts)
    for pid, name in partitioner.partition_id_to_natural_id.items():
        flower = partitioner.load_partition(pid)
        assert sorted(flower["key"]) == sorted(parts[name].keys)
        # sample for sample: the same label behind each key
        labels = dict(zip(flower["key"], flower["label"], strict=True))
        widths = {k: im.size[0] for k, im in zip(flower["key"], flower["image"], strict=True)}
        by_width = {width_of(r): r.label for r in geo_records()}
        assert sorted(labels.values()) == sorted(label for _, label in parts[name])
        assert all(by_width[widths[k]] == labels[k] for k in labels)


def test_torch_format_in_a_dataloader_needs_no_glue(train):
    """The documented torch path: every column converts, dates included."""
    import torch
    from torch.utils.data import DataLoader

    torch_ds = train.with_format("torch")
    batches = list(DataLoader(torch_ds, batch_size=1))
    assert len(batches) == len(train)
    first = batches[0]
    assert first["date_upload"].dtype == torch.int64 and first["label"].dtype == torch.int64
    assert first["image"].dtype == torch.uint8 and first["image"].shape[1] == 3
    assert sorted(int(b["date_upload"]) for b in batches) == sorted(train["date_upload"])
    strings = list(DataLoader(torch_ds.remove_columns("image"), batch_size=4))
    assert sum(len(b["key"]) for b in strings) == len(train)


def test_validation_is_the_hub_name_of_val(shard_root, tmp_path):
    val = to_hf_dataset(shard_root, "validation", cache_dir=tmp_path)
    assert val.split == "validation" and val["photo_id"] == ["1010"]
    assert to_hf_dataset(shard_root, "val", cache_dir=tmp_path)["key"] == val["key"]
