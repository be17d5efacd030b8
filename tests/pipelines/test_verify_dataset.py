"""``python -m pipelines.verify_dataset``: a clean build passes; each kind of damage is listed."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pandas as pd

from pipelines.verify_dataset import main


def _verify(capsys, root: Path, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main([str(root), "--no-progress", *extra])
    return code, capsys.readouterr().out.splitlines()


def _shard(root: Path, rank: int = 0) -> tuple[Path, list[tarfile.TarInfo]]:
    index = pd.read_parquet(root / "shards" / "shards.parquet")
    path = root / "shards" / index["shard"].value_counts().index[rank]
    with tarfile.open(path) as tar:
        return path, tar.getmembers()


def test_a_clean_build_verifies(built, capsys):
    code, lines = _verify(capsys, built)
    assert code == 0 and lines == [f"verified {built}: 31 samples in 11 shards, manifest 31 "
                                   "rows: clean"]
    assert _verify(capsys, built / "shards")[0] == 0  # a shard folder alone verifies too


def test_truncated_shard(copy, capsys):
    path, members = _shard(copy)
    with open(path, "r+b") as f:
        f.truncate(members[-3].offset)
    code, lines = _verify(capsys, copy)
    key = members[-3].name.split(".")[0]
    assert code == 1
    assert f"sample {key} ({path.name}): missing from the shards" in lines
    assert any(line.startswith(f"shard {path.name} is ") and "truncated" in line for line in lines)
    assert lines[-1].endswith(f"{len(lines) - 1} problem(s)")


def test_corrupt_jpeg(copy, capsys):
    path, members = _shard(copy)
    jpg = next(m for m in members if m.name.endswith(".jpg"))
    with open(path, "r+b") as f:
        f.seek(jpg.offset_data + jpg.size // 2)
        f.write(b"\x00" * 32)
    code, lines = _verify(capsys, copy)
    assert code == 1 and lines[:-1] == [
        f"sample {jpg.name[:-4]} ({path.name}): JPEG sha256 differs from the index (corrupt image)",
        f"sample {jpg.name[:-4]} ({path.name}): JPEG sha256 differs from the manifest's"]


def test_duplicated_and_edited_index_rows(copy, capsys):
    index_path = copy / "shards" / "shards.parquet"
    index = pd.read_parquet(index_path)
    edited = pd.concat([index, index], ignore_index=True)
    edited.loc[0, "label"] = (int(edited.loc[0, "label"]) + 1) % 42
    edited.to_parquet(index_path)
    code, lines = _verify(capsys, copy)
    assert code == 1
    assert any("index lists 31 key(s) more than once" in line for line in lines)
    assert any(line.startswith(f"sample {index.loc[0, 'key']} ") and "label" in line
               for line in lines)


def test_sample_twice_in_the_shards_and_a_stray_shard(copy, capsys):
    first, members = _shard(copy, 0)
    second, _ = _shard(copy, 1)
    key = members[0].name.split(".")[0]
    with tarfile.open(first) as src, tarfile.open(second, "a") as dst:
        for member in members[:3]:
            dst.addfile(member, src.extractfile(member))
    shutil.copy(first, copy / "shards" / "train-extra-000000.tar")
    code, lines = _verify(capsys, copy)
    assert code == 1
    assert any(line.startswith(f"sample {key} ({first.name}): found 2 times") for line in lines)
    assert f"shard train-extra-000000.tar is in {copy / 'shards'} but not in the index " \
           "(stray)" in lines


def test_manifest_disagreeing_with_the_shards(copy, capsys):
    manifest = pd.read_parquet(copy / "manifest.parquet")
    manifest.loc[0, "sha256"] = "0" * 64
    split = manifest.loc[1, "split"]
    manifest["split"] = manifest["split"].astype(str)   # a categorical column takes no new value
    manifest.loc[1, "split"] = "test"
    manifest.to_parquet(copy / "manifest.parquet")
    code, lines = _verify(capsys, copy)
    assert code == 1
    assert f"photo {manifest.loc[1, 'photo_id']}: split test in the manifest, {split} in the " \
           "index" in lines
    assert any(line.startswith(f"sample fm{manifest.loc[0, 'photo_id']} ")
               and "differs from the manifest" in line for line in lines)


def test_listing_is_bounded(copy, capsys):
    for tar in (copy / "shards").glob("*.tar"):
        tar.unlink()
    code, lines = _verify(capsys, copy, "--max-problems", "3")
    assert code == 1 and len(lines) == 5 and lines[3].startswith("... and ")


def test_not_a_build_folder_is_exit_2(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_an_edited_continent_or_subcontinent_is_a_problem(copy, capsys):
    index_path = copy / "shards" / "shards.parquet"
    index = pd.read_parquet(index_path)
    row = index[index["continent"] != "unknown"].index[0]
    key = index.loc[row, "key"]
    index.loc[row, "continent"] = "Oceania" if index.loc[row, "continent"] != "Oceania" else "Asia"
    index.loc[row + 1, "subcontinent"] = "Melanesia"
    index.to_parquet(index_path)
    code, lines = _verify(capsys, copy)
    assert code == 1
    assert any(line.startswith(f"sample {key} ") and "continent" in line for line in lines)
    assert any("Melanesia in the index" in line for line in lines), lines
