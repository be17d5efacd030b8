"""The typed manifest: keys, categories, timestamps, nulls; old manifests read the same."""

from __future__ import annotations

import math

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flickr_mammal.manifest import (
    MANIFEST_COLUMNS,
    normalize_manifest,
    read_manifest,
    write_manifest,
)
from flickr_mammal.records import PUBLIC_FIELDS
from flickr_mammal.report import count_table
from pipelines.skew_report import prepare_manifest
from skewtools.report import load_labels


def old_manifest() -> pd.DataFrame:
    """Three rows as manifests were written before the typed schema (raw types, sentinels)."""
    rows = [
        ("11", "cat", 6, "FR", "France", "Western Europe", "Europe", 1_500_000_000,
         "2016-05-04 10:20:30", 16, 4, 0),
        ("12", "dog", 10, "", "unknown", "unknown", "unknown", 0, "", 0, -1, -1),
        ("13", "cat", 6, "KE", "Kenya", "Eastern Africa", "Africa", 1_400_000_000,
         "0000-00-00 00:00:00", 11, 2, 3),
    ]
    frame = pd.DataFrame([{
        "photo_id": pid, "owner": "o@N00", "class_name": name, "label": label,
        "latitude": 1.5, "longitude": 2.25, "accuracy": acc, "license": lic, "title": "",
        "date_upload": upload, "date_taken": taken, "url": "http://x/1.jpg", "sha256": "ab",
        "width": 300, "height": 200, "clean_score": math.nan, "clean_rank": rank,
        "country_code": cc, "country": country, "subcontinent": sub, "continent": cont,
        "split": "train", "shard": "train-000000.tar",
    } for pid, name, label, cc, country, sub, cont, upload, taken, acc, lic, rank in rows])
    return frame[list(PUBLIC_FIELDS)]


@pytest.fixture()
def paths(tmp_path):
    old = tmp_path / "old.parquet"
    old_manifest().to_parquet(old, index=False)
    new = tmp_path / "new.parquet"
    geo = pd.Series(["ok", "at_sea", "ok"])
    write_manifest(old_manifest().assign(geo_status=geo), new)
    return old, new


def test_new_manifest_is_typed(paths):
    _, new = paths
    schema = pq.read_schema(new)
    assert schema.names == list(MANIFEST_COLUMNS)
    for name in ("class_name", "continent", "subcontinent", "country", "split", "geo_status"):
        assert pa.types.is_dictionary(schema.field(name).type), name
    assert schema.field("date_upload").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("date_taken").type == pa.timestamp("ms")
    assert schema.field("clean_score").type == pa.float64()     # all null, still float
    frame = pd.read_parquet(new)
    assert frame["key"].tolist() == ["fm11", "fm12", "fm13"]
    assert frame["date_upload"][0] == pd.Timestamp("2017-07-14 02:40:00", tz="UTC")
    assert frame["date_taken"][0] == pd.Timestamp("2016-05-04 10:20:30")
    missing = frame.iloc[1]
    for name in ("continent", "subcontinent", "country", "country_code", "date_upload",
                 "date_taken", "accuracy", "license", "clean_rank", "title"):
        assert pd.isna(missing[name]), name
    assert missing["geo_status"] == "at_sea"
    assert pd.isna(frame["date_taken"][2])                      # Flickr's zero date
    assert frame["license"].tolist()[::2] == [4, 2]
    assert frame["clean_rank"].tolist()[::2] == [0, 3]       # rank 0 is a value, -1 is null
    assert list(frame["continent"].cat.categories) == ["Africa", "Americas", "Asia", "Europe",
                                                       "Oceania"]


def test_old_and_new_manifests_read_the_same(paths):
    old, new = paths
    got_old, got_new = read_manifest(old), read_manifest(new)
    pd.testing.assert_frame_equal(got_old.drop(columns="geo_status"),
                                  got_new.drop(columns="geo_status"))
    assert got_old["geo_status"].tolist()[::2] == ["ok", "ok"]  # unplaced: reason not recorded
    assert pd.isna(got_old["geo_status"][1])
    pd.testing.assert_frame_equal(read_manifest(new), pd.read_parquet(new))   # idempotent


def test_readers_take_both(paths):
    old, new = paths
    for path in (old, new):
        table = count_table(read_manifest(path), "continent")
        assert table.loc["cat", "Europe"] == table.loc["cat", "Africa"] == 1
        assert table.loc["dog", "unplaced"] == 1
        labels = load_labels(path, prepare_manifest)   # as skew_report reads a manifest
        assert labels["continent"].isna().tolist() == [False, True, False]


def test_missing_manifest_says_how_to_build(tmp_path):
    with pytest.raises(FileNotFoundError, match="build_dataset"):
        read_manifest(tmp_path)


def test_another_class_list_has_its_own_categories_in_label_order(tmp_path):
    birds = old_manifest().assign(class_name=["crow", "robin", "crow"], label=[2, 0, 2])
    birds.to_parquet(tmp_path / "m.parquet", index=False)
    assert list(normalize_manifest(birds)["class_name"].cat.categories) == ["robin", "crow"]
    assert list(read_manifest(tmp_path / "m.parquet")["class_name"].cat.categories) == \
        ["robin", "crow"]
