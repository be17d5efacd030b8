"""Train/val splits: stratified per class, fixed by photo id and seed, independent of order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flickr_mammal.records import PhotoRecord
from flickr_mammal.splits import assign_splits, split_rank


def _records(sizes: dict[int, int]) -> list[PhotoRecord]:
    return [PhotoRecord(photo_id=f"{label}{i:04d}", owner="o", class_name="x", label=label,
                        latitude=0.0, longitude=0.0)
            for label, n in sizes.items() for i in range(n)]


def _val(records: list[PhotoRecord]) -> set[str]:
    return {r.photo_id for r in records if r.split == "val"}


def test_val_count_per_class_is_rounded_fraction():
    # round(0.05 * n): 40 -> 2, 30 -> 1.5 -> 2 (half to even), 10 -> 0.5 -> 0, 1 -> 0
    out = assign_splits(_records({0: 40, 1: 30, 2: 10, 3: 1}), val_fraction=0.05)
    val = Counter(r.label for r in out if r.split == "val")
    assert dict(val) == {0: 2, 1: 2}
    assert {r.split for r in out} == {"train", "val"}


def test_val_are_the_lowest_ranked_photos_of_each_class():
    records = _records({0: 20, 1: 20})
    out = assign_splits(records, val_fraction=0.1, seed=7)
    for label in (0, 1):
        ids = sorted((r.photo_id for r in records if r.label == label),
                     key=lambda pid: split_rank(pid, 7))
        assert {r.photo_id for r in out if r.label == label and r.split == "val"} == set(ids[:2])


def test_independent_of_input_order_and_keeps_it():
    records = _records({0: 50, 5: 30})
    shuffled = records[:]
    random.Random(3).shuffle(shuffled)
    a, b = assign_splits(records, seed=1), assign_splits(shuffled, seed=1)
    assert _val(a) == _val(b)
    assert [r.photo_id for r in b] == [r.photo_id for r in shuffled]


def test_seed_changes_the_choice():
    records = _records({0: 200})
    assert _val(assign_splits(records, seed=0)) != _val(assign_splits(records, seed=1))
    assert split_rank("123", 0) == split_rank("123", 0) != split_rank("123", 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="val_fraction"):
        assign_splits(_records({0: 3}), val_fraction=1.0)
    with pytest.raises(ValueError, match="duplicate"):
        assign_splits(_records({0: 2}) * 2)
    assert assign_splits([]) == []
