"""WebDataset shards: no EXIF, byte-reproducible, grouped, size-limited, atomic, indexed."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from flickr_mammal.records import PUBLIC_FIELDS
from flickr_mammal.shards import (
    INDEX_COLUMNS,
    group_slug,
    read_index,
    strip_jpeg_metadata,
    write_shards,
)
from tests.flickr_mammal.geo_samples import GPS_IFD, geo_records, make_jpeg, read_image


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.suffix == ".tar"}


def _members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as tar:
        return tar.getmembers()


def test_strip_removes_exif_gps_and_comments_losslessly():
    original = make_jpeg(40, color=(12, 200, 99))
    assert dict(Image.open(io.BytesIO(original)).getexif().get_ifd(GPS_IFD))  # GPS is there
    stripped = strip_jpeg_metadata(original)
    for secret in (b"Exif", b"SecretCam", b"private note"):
        assert secret in original and secret not in stripped
    a, b = Image.open(io.BytesIO(original)), Image.open(io.BytesIO(stripped))
    assert len(b.getexif()) == 0
    assert np.array_equal(np.asarray(a), np.asarray(b))
    # A trailing second image (multi-picture files) goes too; idempotent.
    assert strip_jpeg_metadata(original + original) == stripped == strip_jpeg_metadata(stripped)


def test_strip_handles_progressive_and_restart_markers_and_rejects_non_jpeg():
    noise = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    for options in ({"progressive": True}, {"restart_marker_blocks": 1}):
        buf = io.BytesIO()
        Image.fromarray(noise).save(buf, "JPEG", quality=80, **options)
        decoded = np.asarray(Image.open(io.BytesIO(strip_jpeg_metadata(buf.getvalue()))))
        assert np.array_equal(decoded, np.asarray(Image.open(buf)))
    with pytest.raises(ValueError, match="not a JPEG"):
        strip_jpeg_metadata(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="truncated"):
        strip_jpeg_metadata(make_jpeg(8)[:-2])


def test_group_slug():
    assert group_slug("Australia and New Zealand") == "australia-and-new-zealand"
    assert group_slug("Côte d'Ivoire") == "cote-d-ivoire"
    assert group_slug("") == "unknown"


def test_sample_members_json_and_tar_headers(tmp_path):
    index = write_shards(geo_records(), read_image, tmp_path, split="train", coord_decimals=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards.parquet", "train-000000.tar"]
    members = _members(tmp_path / "train-000000.tar")
    assert len(members) == 3 * 11
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o444)}
    # Order: a fixed hash of the key, which mixes the labels; .cls, .jpg, .json per sample.
    assert [m.name for m in members[:3]] == ["fm1004.cls", "fm1004.jpg", "fm1004.json"]
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        meta = json.loads(tar.extractfile("fm1001.json").read())
        assert tar.extractfile("fm1001.cls").read() == b"23"
        jpg = tar.extractfile("fm1001.jpg").read()
        blob = (tmp_path / "train-000000.tar").read_bytes()
    assert set(meta) == set(PUBLIC_FIELDS)
    assert (meta["latitude"], meta["longitude"]) == (-1.23, 36.79)
    assert (meta["shard"], meta["split"], meta["continent"]) == ("train-000000.tar", "train",
                                                                 "Africa")
    assert meta["clean_score"] is None                         # NaN is not JSON
    assert b"Exif" not in blob and b"SecretCam" not in blob   # no EXIF reached the shard
    assert Image.open(io.BytesIO(jpg)).size == (17, 12)
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert index["key"].tolist()[:2] == ["fm1004", "fm1003"]
    labels = index["label"].tolist()          # not label-sorted: 23, 41, 12, 21, 20, ...
    assert labels != sorted(labels) and labels[:3] == [23, 41, 12]


def test_byte_reproducible_whatever_the_input_order(tmp_path):
    records = geo_records()
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    a = write_shards(records, read_image, tmp_path / "a", split="train", group_by="continent")
    b = write_shards(shuffled, read_image, tmp_path / "b", split="train", group_by="continent")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    pd.testing.assert_frame_equal(a, b)
    again = write_shards(records, read_image, tmp_path / "a", split="train", group_by="continent")
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    pd.testing.assert_frame_equal(again, read_index(tmp_path / "a"))


def test_group_by_continent_puts_each_group_in_its_own_shards(tmp_path):
    index = write_shards(geo_records(), read_image, tmp_path, split="train",
                         group_by="continent", max_samples=2)
    shards_of = index.groupby("continent")["shard"].apply(lambda s: sorted(set(s))).to_dict()
    assert shards_of == {
        "Africa": ["train-africa-000000.tar", "train-africa-000001.tar",
                   "train-africa-000002.tar"],
        "Europe": ["train-europe-000000.tar", "train-europe-000001.tar"],
        "Oceania": ["train-oceania-000000.tar"],
        "unknown": ["train-unknown-000000.tar"],
    }
    assert index.groupby("shard").size().max() == 2
    assert sorted(_digests(tmp_path)) == sorted(index["shard"].unique())


def test_groups_with_the_same_slug_never_share_a_shard_name(tmp_path):
    records = [r.evolve(country="Korea, Rep.") for r in geo_records()[:2]]
    records += [r.evolve(country="Korea Rep") for r in geo_records()[2:3]]
    index = write_shards(records, read_image, tmp_path, split="train", group_by="country")
    assert index.groupby("country")["shard"].unique().map(list).to_dict() == {
        "Korea Rep": ["train-korea-rep-000000.tar"], "Korea, Rep.": ["train-korea-rep-000001.tar"]}


def test_max_bytes_starts_a_new_shard(tmp_path):
    index = write_shards(geo_records()[:4], read_image, tmp_path, split="train",
                         max_bytes=6 * 1024)
    assert index["shard"].nunique() > 1
    assert all(p.stat().st_size <= 6 * 1024 + 10240 for p in tmp_path.glob("*.tar"))


def test_splits_share_one_index_and_stale_shards_go(tmp_path):
    records = [r.evolve(split="val" if r.label == 41 else "train") for r in geo_records()]
    write_shards(records, read_image, tmp_path, split="train", group_by="continent")
    write_shards(records, read_image, tmp_path, split="val")
    index = read_index(tmp_path)
    assert index.groupby("split").size().to_dict() == {"train": 9, "val": 2}
    # Rewriting train without grouping replaces the old train shards and index rows.
    write_shards(records, read_image, tmp_path, split="train")
    assert sorted(p.name for p in tmp_path.glob("*.tar")) == ["train-000000.tar",
                                                              "val-000000.tar"]
    assert read_index(tmp_path).groupby("split").size().to_dict() == {"train": 9, "val": 2}


def test_unreadable_images_are_skipped_not_fatal(tmp_path):
    def flaky(record):
        if record.photo_id == "1002":
            raise OSError("disk error")
        return b"not a jpeg" if record.photo_id == "1003" else read_image(record)

    index = write_shards(geo_records(), flaky, tmp_path, split="train")
    assert len(index) == 9 and set(index.attrs["skipped"]) == {"1002", "1003"}


def test_crash_leaves_no_partial_shard(tmp_path):
    def crash(record):
        if record.photo_id == "1009":
            raise RuntimeError("killed")
        return read_image(record)

    with pytest.raises(RuntimeError):
        write_shards(geo_records(), crash, tmp_path, split="train", max_samples=3)
    names = sorted(p.name for p in tmp_path.iterdir())
    # Samples in (label) order: 1005, 1006, 1007 | 1008, 1009 <- crash inside the second shard.
    assert names == ["train-000000.tar"]
    assert len(_members(tmp_path / "train-000000.tar")) == 9


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="group_by"):
        write_shards([], read_image, tmp_path, split="train", group_by="planet")
    with pytest.raises(ValueError, match="split"):
        write_shards([], read_image, tmp_path, split="Train set")
    with pytest.raises(ValueError, match="duplicate"):
        write_shards(geo_records()[:1] * 2, read_image, tmp_path, split="train")


@pytest.mark.parametrize(("progress", "disable"), [(True, None), (False, True)])
def test_progress_false_turns_the_bar_off(tmp_path, monkeypatch, progress, disable):
    from flickr_mammal import shards

    seen = []

    def fake_tqdm(items, **kwargs):
        seen.append(kwargs["disable"])
        return items

    monkeypatch.setattr(shards, "tqdm", fake_tqdm)
    write_shards(geo_records(), read_image, tmp_path, split="train", progress=progress)
    assert seen == [disable]  # None: tqdm shows a bar only on a terminal


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_shards_and_index_get_the_umask_permissions(tmp_path, umask, mode):
    """A dataset shared on disk must be readable by others: mkstemp's 0600 is not kept."""
    import os
    import stat

    old = os.umask(umask)
    try:
        write_shards(geo_records(), read_image, tmp_path, split="train", max_samples=4)
    finally:
        os.umask(old)
    files = sorted(tmp_path.iterdir())
    assert [p.name for p in files if p.suffix == ".tar"]
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {
        p.name: mode for p in files}
