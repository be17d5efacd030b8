"""load_partitions: exact samples per geographic partition, read only from their own shards."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader
from torchvision.transforms.functional import pil_to_tensor

import flickr_mammal
from flickr_mammal.reader import GeoShardDataset, load_partitions
from flickr_mammal.shards import write_shards
from tests.flickr_mammal.geo_samples import geo_records, read_image, width_of

RECORDS = geo_records()
BY_WIDTH = {width_of(r): r for r in RECORDS}


@pytest.fixture(scope="module")
def shard_sets(tmp_path_factory) -> dict[str, object]:
    """The same records written grouped by continent (max 2 a shard) and mixed in one shard."""
    root = tmp_path_factory.mktemp("shards")
    records = [r.evolve(split="val" if r.photo_id == "1010" else "train") for r in RECORDS]
    write_shards(records, read_image, root / "grouped", split="train", group_by="continent",
                 max_samples=2)
    write_shards(records, read_image, root / "grouped", split="val", group_by="continent")
    write_shards(records, read_image, root / "mixed", split="train")
    return {"grouped": root / "grouped", "mixed": root / "mixed"}


def _read(dataset: GeoShardDataset) -> list[tuple[str, int]]:
    """(photo id, label) of every yielded sample, found from the decoded image's width."""
    return sorted((BY_WIDTH[image.size[0]].photo_id, label) for image, label in dataset)


def _expected(field: str, value: str) -> list[tuple[str, int]]:
    return sorted((r.photo_id, r.label) for r in RECORDS
                  if getattr(r, field) == value and r.photo_id != "1010")


@pytest.mark.parametrize("layout", ["grouped", "mixed"])
def test_by_continent_yields_exactly_each_groups_samples(shard_sets, layout):
    parts = load_partitions(shard_sets[layout], by="continent")
    assert list(parts) == ["Africa", "Europe", "Oceania"]
    for name in parts:
        assert _read(parts[name]) == _expected("continent", name)
        assert len(parts[name]) == len(_expected("continent", name))
    assert parts.excluded == 1                    # the at-sea photo is kept apart
    assert parts.sizes.to_dict() == {"Africa": 5, "Europe": 3, "Oceania": 1}


def test_reads_only_the_shards_holding_the_group(shard_sets):
    grouped = load_partitions(shard_sets["grouped"], by="continent")
    assert [p.name for p in grouped["Europe"].shards] == ["train-europe-000000.tar",
                                                           "train-europe-000001.tar"]
    assert [p.name for p in grouped["Oceania"].shards] == ["train-oceania-000000.tar"]
    mixed = load_partitions(shard_sets["mixed"], by="continent")
    assert [p.name for p in mixed["Oceania"].shards] == ["train-000000.tar"]


def test_by_subcontinent_country_and_none(shard_sets):
    sub = load_partitions(shard_sets["grouped"], by="subcontinent")
    # skewtools' by_attribute order: largest first, ties by name
    assert list(sub) == ["Eastern Africa", "Southern Africa", "Western Europe",
                         "Australia and New Zealand", "Northern Europe"]
    assert sub.sizes.tolist() == [3, 2, 2, 1, 1]
    assert _read(sub["Eastern Africa"]) == [("1001", 23), ("1002", 41), ("1003", 41)]
    country = load_partitions(shard_sets["mixed"], by="country")
    assert country.sizes.to_dict() == {"Australia": 1, "France": 2, "Kenya": 2,
                                       "South Africa": 2, "Tanzania": 1, "United Kingdom": 1}
    everything = load_partitions(shard_sets["mixed"], by=None)
    assert list(everything) == ["all"] and len(everything["all"]) == 9


def test_counts_are_a_partition_by_class_matrix(shard_sets):
    parts = load_partitions(shard_sets["grouped"], by="continent")
    assert parts.counts.shape == (3, 42)
    assert parts.counts.loc["Africa"][parts.counts.loc["Africa"] > 0].to_dict() == {
        "cheetah": 1, "lion": 2, "zebra": 2}
    assert (parts.counts.sum(axis=1) == parts.sizes).all()


def test_min_size_merges_or_drops_small_groups(shard_sets):
    merged = load_partitions(shard_sets["grouped"], by="subcontinent", min_size=2)
    assert list(merged) == ["Eastern Africa", "Southern Africa", "Western Europe", "other"]
    assert _read(merged["other"]) == [("1008", 13), ("1009", 20)]
    dropped = load_partitions(shard_sets["grouped"], by="subcontinent", min_size=2,
                              drop_small=True)
    assert list(dropped) == ["Eastern Africa", "Southern Africa", "Western Europe"]


def test_transform_split_and_dataloader(shard_sets):
    parts = load_partitions(shard_sets["grouped"], by="continent", split="val",
                            transform=pil_to_tensor)
    assert list(parts) == ["Oceania"]
    (image, label), = list(parts["Oceania"])
    assert isinstance(image, torch.Tensor) and image.shape == (3, 12, width_of(RECORDS[9]))
    assert label == 21
    train = load_partitions(shard_sets["grouped"], by="continent", transform=pil_to_tensor,
                            shuffle_buffer=4, seed=1)
    batches = list(DataLoader(train["Europe"], batch_size=3, num_workers=0,
                              collate_fn=lambda b: [label for _, label in b]))
    assert Counter(sum(batches, [])) == Counter({12: 2, 13: 1})


def test_shuffle_is_seeded(shard_sets):
    def order(seed: int) -> list[tuple[int, int]]:
        parts = load_partitions(shard_sets["mixed"], by=None, shuffle_buffer=9, seed=seed)
        return [(image.size[0], label) for image, label in parts["all"]]

    assert order(3) == order(3)
    assert sorted(order(3)) == sorted(order(4))


def test_build_root_layout_and_errors(shard_sets, tmp_path):
    # A build root whose shards sit in shards/ is found too.
    write_shards([r.evolve(split="train") for r in RECORDS[:2]], read_image, tmp_path / "shards",
                 split="train")
    assert list(flickr_mammal.load_partitions(tmp_path)) == ["Africa"]
    # ... and one whose index is copied to the build root beside shards/.
    (tmp_path / "shards.parquet").write_bytes((tmp_path / "shards" / "shards.parquet").read_bytes())
    assert _read(load_partitions(tmp_path)["Africa"]) == [("1001", 23), ("1002", 41)]
    with pytest.raises(ValueError, match="by must be"):
        load_partitions(shard_sets["mixed"], by="planet")
    with pytest.raises(ValueError, match="split 'test'"):
        load_partitions(shard_sets["mixed"], split="test")
    with pytest.raises(FileNotFoundError, match="shards.parquet"):
        load_partitions(tmp_path / "nowhere")
    with pytest.raises(KeyError, match="partitions: Africa"):
        load_partitions(tmp_path)["Asia"]


def test_dataloader_workers_divide_shards_without_duplicates(shard_sets):
    africa = load_partitions(shard_sets["grouped"], by="continent")["Africa"]  # 3 shards
    loader = DataLoader(africa, batch_size=None, num_workers=2)
    assert sorted((BY_WIDTH[im.size[0]].photo_id, int(y)) for im, y in loader) == _expected(
        "continent", "Africa")


def test_max_samples_keeps_a_fixed_uniform_choice_per_partition(shard_sets):
    full = load_partitions(shard_sets["grouped"], by="continent")
    part = load_partitions(shard_sets["grouped"], by="continent", max_samples=2, seed=1)
    assert part.sizes.to_dict() == {"Africa": 2, "Europe": 2, "Oceania": 1}
    for name in part:
        assert set(_read(part[name])) <= set(_read(full[name])) and len(part[name]) == \
            len(_read(part[name]))
    again = load_partitions(shard_sets["grouped"], by="continent", max_samples=2, seed=1)
    assert _read(again["Africa"]) == _read(part["Africa"])            # fixed by the seed
    others = {tuple(_read(load_partitions(shard_sets["grouped"], by="continent", max_samples=2,
                                          seed=s)["Africa"])) for s in range(2, 8)}
    assert len(others) > 1                                              # and it is a choice
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        load_partitions(shard_sets["grouped"], max_samples=0)


def test_deal_gives_iid_partitions_of_the_same_samples(shard_sets):
    geo = load_partitions(shard_sets["grouped"], by="continent")
    iid = load_partitions(shard_sets["grouped"], by=None, deal=3, seed=4)
    assert list(iid) == ["iid-0", "iid-1", "iid-2"] and iid.sizes.tolist() == [3, 3, 3]
    dealt = [_read(iid[name]) for name in iid]
    assert sorted(sum(dealt, [])) == sorted(sum((_read(geo[n]) for n in geo), []))
    assert all(len(set(d)) == len(d) for d in dealt)                   # nothing twice
    other = load_partitions(shard_sets["grouped"], by=None, deal=3, seed=5)
    assert [_read(other[n]) for n in other] != dealt                   # the seed decides
    with pytest.raises(ValueError, match="deal N >= 1 IID partitions from by=None"):
        load_partitions(shard_sets["grouped"], by="continent", deal=3)
