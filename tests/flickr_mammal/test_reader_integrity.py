"""Readers refuse damaged shard sets (truncated shards, corrupt JPEGs, edited indexes), and the
shuffle epoch reaches persistent DataLoader workers. Data: the synthetic fixture build."""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from torch.utils.data import DataLoader

from flickr_mammal.integrity import DatasetIntegrityError
from flickr_mammal.reader import load_partitions


def _read_all(root: Path) -> int:
    return sum(len(list(ds)) for ds in load_partitions(root, by=None).values())


def _fullest_shard(root: Path) -> tuple[Path, list[tarfile.TarInfo]]:
    index = pd.read_parquet(root / "shards" / "shards.parquet")
    name = index[index["continent"] != "unknown"]["shard"].value_counts().index[0]
    path = root / "shards" / name
    with tarfile.open(path) as tar:
        return path, tar.getmembers()


def test_the_clean_build_reads_whole(built):
    parts = load_partitions(built, by=None)
    index = pd.read_parquet(built / "shards" / "shards.parquet")
    placed = index[(index["split"] == "train") & (index["continent"] != "unknown")]
    assert _read_all(built) == len(parts["all"]) == len(placed) > 20


def test_shard_cut_at_a_member_boundary_is_caught_at_open(copy):
    path, members = _fullest_shard(copy)
    with open(path, "r+b") as f:
        f.truncate(members[-3].offset)  # the last sample's three members are gone
    with pytest.raises(DatasetIntegrityError, match=f"shard {path.name} is .* truncated"):
        load_partitions(copy, by=None)


def test_shard_that_ends_early_raises_naming_the_shard(copy):
    """Cut as above, then zero-padded back to its size: only reading can tell."""
    path, members = _fullest_shard(copy)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(members[-3].offset)
        f.truncate(size)
    n = len(members) // 3
    with pytest.raises(DatasetIntegrityError,
                       match=f"shard {path.name} ended after {n - 1} of the {n} samples"):
        _read_all(copy)


def test_corrupt_jpeg_bytes_raise_instead_of_decoding_garbage(copy):
    path, members = _fullest_shard(copy)
    jpg = next(m for m in members if m.name.endswith(".jpg"))
    with open(path, "r+b") as f:  # same length, scrambled entropy-coded data
        f.seek(jpg.offset_data + jpg.size // 2)
        f.write(bytes(range(64)))
    with pytest.raises(DatasetIntegrityError, match=f"sample {jpg.name[:-4]} in shard "
                                                    f"{path.name}: .*corrupt"):
        _read_all(copy)


def test_duplicated_index_rows_are_refused_at_open(copy):
    index_path = copy / "shards" / "shards.parquet"
    index = pd.read_parquet(index_path)
    pd.concat([index, index], ignore_index=True).to_parquet(index_path)
    with pytest.raises(DatasetIntegrityError, match="more than once"):
        load_partitions(copy, by=None)


def test_edited_index_rows_are_refused(copy):
    index_path = copy / "shards" / "shards.parquet"
    index = pd.read_parquet(index_path)
    edited = index.copy()
    edited.loc[0, "key"] = "fm999"
    edited.to_parquet(index_path)
    with pytest.raises(DatasetIntegrityError, match="keys do not match"):
        load_partitions(copy, by=None)
    # A row moved to another shard: that shard now "holds" a sample it does not have.
    placed = index[index["continent"] != "unknown"]
    row, other = placed.index[0], sorted(set(placed["shard"]) - {placed["shard"].iloc[0]})[0]
    moved = index.copy()
    moved.loc[row, "shard"] = other
    moved.to_parquet(index_path)
    with pytest.raises(DatasetIntegrityError,
                       match="shard .* (ended after|holds more|is .* too short)"):
        _read_all(copy)


def _fingerprint(image) -> str:
    return hashlib.sha256(image.tobytes()).hexdigest()[:12]


def test_set_epoch_reaches_persistent_workers(built):
    def orders(seed: int) -> list[list[str]]:
        data = load_partitions(built, by=None, shuffle_buffer=8, seed=seed,
                               transform=_fingerprint)["all"]
        loader = DataLoader(data, batch_size=None, num_workers=2, persistent_workers=True)
        seen = []
        for epoch in range(3):
            data.set_epoch(epoch)
            seen.append([image for image, _ in loader])
        return seen

    first = orders(seed=5)
    assert sorted(first[0]) == sorted(first[1]) == sorted(first[2])  # the same samples
    assert first[0] != first[1] and first[1] != first[2]             # in another order
    assert orders(seed=5) == first                                    # reproducibly
