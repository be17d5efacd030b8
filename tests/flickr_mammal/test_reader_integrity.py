"""Readers refuse damaged shard sets (truncated shards, corrupt JPEGs, edited indexes), and the
shuffle epoch reaches persistent DataLoader workers. Data: the synthetic fixture build."""

from __future__ import annotations

import hashlib
import os
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


# ---- edited index rows and shards pointing elsewhere ----------------------------------------
def _edit_index(root: Path, edit) -> pd.DataFrame:
    """Apply ``edit(index) -> index`` to the copy's index; return the original index."""
    path = root / "shards" / "shards.parquet"
    index = pd.read_parquet(path)
    edit(index.copy()).to_parquet(path)
    return index


def _placed_train_row(index: pd.DataFrame) -> int:
    return index[(index["split"] == "train") & (index["continent"] != "unknown")].index[0]


def _set(index: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    index.loc[row, column] = value
    return index


@pytest.mark.parametrize("column", ["label", "split", "continent", "subcontinent"])
def test_an_edited_index_cell_is_refused_naming_shard_and_key(copy, column):
    index = pd.read_parquet(copy / "shards" / "shards.parquet")
    row = _placed_train_row(index)
    key, shard = index.loc[row, "key"], index.loc[row, "shard"]
    value = {"label": (int(index.loc[row, "label"]) + 1) % 42, "split": "val",
             "continent": "Oceania" if index.loc[row, "continent"] != "Oceania" else "Asia",
             "subcontinent": "Melanesia"}[column]
    _edit_index(copy, lambda ix: _set(ix, row, column, value))
    split = "val" if column == "split" else "train"
    # The shard folder alone: no manifest, so only the samples themselves can tell.
    with pytest.raises(DatasetIntegrityError, match=f"sample {key} in shard {shard}: {column}"):
        for ds in load_partitions(copy / "shards", by="continent", split=split).values():
            list(ds)
    if column == "split":   # a build folder's manifest tells at open
        with pytest.raises(DatasetIntegrityError, match="samples of split train, the manifest"):
            load_partitions(copy, split=split)


def test_a_cls_member_disagreeing_with_the_index_is_refused(copy):
    path, members = _fullest_shard(copy)
    cls = next(m for m in members if m.name.endswith(".cls"))
    with open(path, "r+b") as f:   # one digit for another: same length, same tar
        f.seek(cls.offset_data)
        digit = f.read(1)
        f.seek(cls.offset_data)
        f.write(b"9" if digit != b"9" else b"8")
    with pytest.raises(DatasetIntegrityError, match=f"sample {cls.name[:-4]} in shard "
                                                    f"{path.name}: label .* in its .cls member"):
        _read_all(copy)


def test_a_build_whose_index_lost_a_row_is_refused(copy):
    index = _edit_index(copy, lambda ix: ix.drop(index=_placed_train_row(ix)))
    lost = index.loc[_placed_train_row(index), "photo_id"]
    with pytest.raises(DatasetIntegrityError, match=r"the index lists (\d+) samples of split "
                                                    rf"train, the manifest (?!\1)\d+.*{lost}"):
        load_partitions(copy, by=None)
    # A shard folder alone (no manifest to compare with): reading the shard tells.
    shard = index.loc[_placed_train_row(index), "shard"]
    with pytest.raises(DatasetIntegrityError, match=f"shard {shard} holds .* index row is "
                                                    "missing"):
        _read_all(copy / "shards")


def test_index_shard_values_must_stay_inside_the_shard_folder(copy, tmp_path, built):
    planted = copy.parent / "planted.tar"
    planted.write_bytes((built / "shards" / _fullest_shard(built)[0].name).read_bytes())
    for value, why in (("../../planted.tar", "not a plain shard file name"),
                       (str(planted), "not a plain shard file name")):
        _edit_index(copy, lambda ix, v=value: ix.assign(shard=ix["shard"].where(
            ix.index != _placed_train_row(ix), v)))
        with pytest.raises(DatasetIntegrityError, match=why):
            load_partitions(copy, by=None)


@pytest.mark.timeout(60)
def test_a_shard_symlinked_to_dev_zero_or_a_fifo_fails_fast(copy):
    path, _ = _fullest_shard(copy)
    path.unlink()
    path.symlink_to("/dev/zero")
    with pytest.raises(DatasetIntegrityError, match=f"shard {path.name}: leads outside"):
        load_partitions(copy, by=None)
    path.unlink()
    os.mkfifo(path)         # inside the folder, but a reader would wait for a writer forever
    with pytest.raises(DatasetIntegrityError, match=f"shard {path.name}: not a regular file"):
        load_partitions(copy, by=None)


def test_a_shard_symlinked_to_another_builds_tar_is_refused(copy, built):
    path, _ = _fullest_shard(copy)
    path.unlink()
    path.symlink_to(built / "shards" / path.name)     # the same bytes, but another build
    with pytest.raises(DatasetIntegrityError, match=f"shard {path.name}: leads outside"):
        load_partitions(copy, by=None)


def test_epochs_advance_without_set_epoch_and_train_shuffles_by_default(built):
    def orders(workers: int) -> list[list[str]]:
        data = load_partitions(built, by=None, seed=5, transform=_fingerprint)["all"]
        assert data.shuffle_buffer > 0                          # train: shuffled by default
        loader = DataLoader(data, batch_size=None, num_workers=workers)
        return [[image for image, _ in loader] for _ in range(3)]

    for workers in (0, 2):
        first = orders(workers)
        assert sorted(first[0]) == sorted(first[1]) == sorted(first[2])
        assert first[0] != first[1] and first[1] != first[2]   # a new order every epoch
        assert orders(workers) == first                         # reproducibly
    val = load_partitions(built, by=None, split="val")["all"]
    assert val.shuffle_buffer == 0                              # other splits: shard order
