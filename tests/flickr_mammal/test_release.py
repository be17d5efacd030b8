"""The authors' release: layout checks (release/layout.py) and the import (release/importer.py),
on synthetic archives in the real layout (tests/flickr_mammal/release_fixtures.py)."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from flickr_mammal.build_guard import BuildFolderError
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import get_class
from flickr_mammal.manifest import read_manifest
from flickr_mammal.reader import load_partitions
from flickr_mammal.release import importer
from flickr_mammal.release.importer import PAPER_COLUMNS, ImportConfig, import_release
from flickr_mammal.release.layout import ReleaseLayoutError, read_layout
from flickr_mammal.shards import read_index
from tests.flickr_mammal import release_fixtures as rf


def _expected_parts(per_class: int) -> dict[str, dict[str, tuple[str, int]]]:
    """scheme -> photo id -> (side, k), from the fixture's list files."""
    out: dict[str, dict[str, tuple[str, int]]] = {}
    for name, data in rf.lists(rf.images(per_class)).items():
        scheme, file = name.split("/")
        side, _, k = file.split(".")
        for line in data.decode().splitlines():
            pid = line.rsplit(" ", 1)[0].rsplit("/", 1)[-1].split("_")[0]
            out.setdefault(scheme, {})[pid] = (side, int(k))
    return out


def _config(archive: Path, out: Path, **changes) -> ImportConfig:
    return ImportConfig(archive, out, workers=2, commit_every=8, shard_samples=16,
                        progress=False, **changes)


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("release")
    archive = rf.write_release(root / "geo_animal.tar.gz", per_class=10)
    summary = import_release(_config(archive, root / "out"))
    return root / "out", summary, archive


@pytest.mark.parametrize("lists_first", [False, True])
def test_layout_reads_lists_before_or_after_images(tmp_path, lists_first):
    archive = rf.write_release(tmp_path / "r.tar.gz", 10, lists_first=lists_first)
    layout = read_layout(archive)
    assert len(layout.images) == 40 and layout.lists_first is lists_first
    expected = _expected_parts(10)
    for scheme in rf.SCHEMES:
        got = {layout.images[p].photo_id: v for p, v in layout.parts[scheme].items()}
        assert got == expected[scheme]
    assert layout.paper_labels == {"cat": 0, "dog": 1, "sea lion": 2, "zebra": 3}
    assert layout.ignored == ["README.txt"]
    text = "\n".join(layout.describe())
    assert "40 images in 4 classes" in text and "13parts_shuffled: parts holding images" in text


def test_import_keeps_every_paper_partition(imported):
    out, summary, _ = imported
    assert (summary.images, summary.imported, summary.kept) == (40, 40, 40)
    manifest = read_manifest(out)
    assert list(manifest.columns[-len(PAPER_COLUMNS):]) == list(PAPER_COLUMNS)
    expected = _expected_parts(10)
    for scheme in rf.SCHEMES:
        got = dict(zip(manifest["photo_id"], zip(manifest[f"paper_{scheme}_split"],
                                                 manifest[f"paper_{scheme}"], strict=True),
                       strict=True))
        assert got == expected[scheme]
    labels = dict(zip(manifest["class_name"].astype(str), manifest["label"], strict=True))
    assert labels["sea lion"] == get_class("sea lion").label
    assert manifest.groupby("class_name", observed=True)["paper_label"].first().to_dict() == \
        {"cat": 0, "dog": 1, "sea lion": 2, "zebra": 3}
    assert manifest["latitude"].isna().all() and manifest["continent"].isna().all()
    assert set(manifest["geo_status"].astype(str)) == {"not_in_release"}


@pytest.mark.parametrize("scheme", rf.SCHEMES)
@pytest.mark.parametrize("side", ["train", "val"])
def test_load_partitions_gives_the_papers_exact_parts(imported, scheme, side):
    out, _, _ = imported
    parts = load_partitions(out, by=f"paper_{scheme}", split=side)
    expected: dict[str, set[str]] = {}
    for pid, (s, k) in _expected_parts(10)[scheme].items():
        if s == side:
            expected.setdefault(f"{k:02d}", set()).add(f"fm{pid}")
    assert {name: set(ds.keys) for name, ds in parts.items()} == expected
    assert parts.excluded == 0


def test_reading_a_part_yields_its_images(imported):
    out, _, _ = imported
    part = load_partitions(out, by="paper_5parts_skewed", split="train")["01"]
    samples = list(part)
    assert len(samples) == len(part) > 0
    assert {label for _, label in samples} == {get_class("cat").label,
                                              get_class("sea lion").label}


def test_images_are_checked_and_hashed_like_a_build(imported):
    out, _, _ = imported
    manifest = read_manifest(out).set_index("photo_id")
    index = read_index(out / "shards").set_index("photo_id")
    assert set(PAPER_COLUMNS) <= set(index.columns)
    for pid in ("10000000", "10300009"):
        stored = (out / "images" / pid[-2:] / f"{pid}.jpg").read_bytes()
        assert manifest.loc[pid, "sha256"] == hashlib.sha256(stored).hexdigest()
        assert index.loc[pid, "jpg_sha256"] == hashlib.sha256(stored).hexdigest()
        with Image.open(io.BytesIO(stored)) as im:
            assert im.size == (manifest.loc[pid, "width"], manifest.loc[pid, "height"])
            assert not im.info.get("exif")


def test_a_bad_photo_is_recorded_not_imported(tmp_path):
    def broken(i: int) -> bytes:
        return rf.photo(i)[:200] if i == 3 else rf.photo(i)

    archive = rf.write_release(tmp_path / "r.tar.gz", 5, photo_bytes=broken)
    summary = import_release(_config(archive, tmp_path / "out"))
    assert summary.kept == 19 and summary.failed == {"truncated": 1}
    assert "10000003" not in set(read_manifest(tmp_path / "out")["photo_id"])


def test_a_resumed_import_skips_what_is_done_and_doubles_nothing(tmp_path, imported,
                                                                monkeypatch):
    ref_out, _, archive = imported
    calls = {"n": 0}
    real = importer._process

    def dies_after_16(item, config, layout):
        calls["n"] += 1
        if calls["n"] > 16:
            raise KeyboardInterrupt
        return real(item, config, layout)

    monkeypatch.setattr(importer, "_process", dies_after_16)
    with pytest.raises(KeyboardInterrupt):
        import_release(_config(archive, tmp_path / "out"))
    with Catalog.open(tmp_path / "out" / "catalog.sqlite") as cat:
        assert 0 < cat.count() < 40
        done = cat.count()
    monkeypatch.setattr(importer, "_process", real)
    summary = import_release(_config(archive, tmp_path / "out"))
    assert summary.imported == 40 - done and summary.kept == 40
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "out"), read_manifest(ref_out))
    pd.testing.assert_frame_equal(read_index(tmp_path / "out" / "shards"),
                                  read_index(ref_out / "shards"))


def test_duplicate_photo_ids_import_the_first(tmp_path):
    archive = rf.write_release(tmp_path / "r.tar.gz", 5, extra={
        "geo_animal/images/dog/c/10000000_other.jpg": rf.photo(99)})
    summary = import_release(_config(archive, tmp_path / "out"))
    assert summary.duplicate_ids == 1 and summary.kept == 20
    row = read_manifest(tmp_path / "out").set_index("photo_id").loc["10000000"]
    assert row["class_name"] == "cat"


def test_another_archive_or_a_build_folder_is_refused(tmp_path, imported):
    out, _, _ = imported
    other = rf.write_release(tmp_path / "other.tar.gz", 6)
    with pytest.raises(BuildFolderError, match="another archive"):
        import_release(_config(other, out))


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


LIST = "geo_animal/5parts_skewed/train.txt.0"


@pytest.mark.parametrize(("extra", "skip", "message"), [
    ({"other/readme": b"x"}, (), "holds 'other/readme' outside geo_animal/"),
    ({"geo_animal/images/unicorn/a/1_x.jpg": b"x"}, (), "class folders that are none of"),
    ({"geo_animal/images/cat/1_x.jpg": b"x"}, (), "files not at images/<class>/<subfolder>"),
    ({"geo_animal/images/cat/a/kitty.jpg": b"x"}, (), "do not start with a Flickr photo id"),
    ({LIST: b"cat/a/999_x.jpg 0\n"}, (), "lists 1 images the archive lacks: cat/a/999_x.jpg"),
    ({LIST: b"cat/a/10000000_5192fe3be9.jpg\n"}, (), "line 1 reads"),
    ({LIST: b"cat/a/10000000_5192fe3be9.jpg 1\n"}, ("5parts_skewed/train.txt.0",),
     "list label 1 names images of several classes (cat, dog)"),
    ({}, ("13parts_skewed/train.txt.12", "13parts_skewed/val.txt.12"),
     "13parts_skewed has parts [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], not 13"),
    ({"geo_animal/5parts_skewed/notes.txt": b""}, (), "not named {train,val}.txt.<k>"),
])
def test_a_different_layout_is_one_line_and_writes_nothing(tmp_path, extra, skip, message):
    archive = rf.write_release(tmp_path / "r.tar.gz", 5, extra=extra, skip=skip)
    with pytest.raises(ReleaseLayoutError) as err:
        import_release(_config(archive, tmp_path / "out"))
    text = str(err.value)
    assert message in text and "expected geo_animal/images/<class>" in text and "\n" not in text
    assert not (tmp_path / "out").exists()


def test_an_archive_without_lists_or_images_or_tar(tmp_path):
    only_images = _tar(tmp_path / "a.tar.gz", {"geo_animal/images/cat/a/1_x.jpg": b"x"})
    with pytest.raises(ReleaseLayoutError, match="holds no list files"):
        read_layout(only_images)
    with pytest.raises(ReleaseLayoutError, match="holds no image"):
        read_layout(_tar(tmp_path / "b.tar.gz", {LIST: b""}))
    (tmp_path / "c.tar.gz").write_bytes(b"not a tar at all")
    with pytest.raises(ReleaseLayoutError, match="not a readable tar archive"):
        read_layout(tmp_path / "c.tar.gz")
