"""The SQLite catalog: slices, ambiguity, paging under updates, duplicates, manifest export."""

import math
import sqlite3

import pandas as pd
import pytest

from flickr_mammal import catalog as catalog_module
from flickr_mammal.catalog import Catalog, failure_reason
from flickr_mammal.manifest import MANIFEST_COLUMNS
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.search import SliceResult

LABELS = {"cat": 6, "dog": 10, "fox": 12}


def rec(photo_id: str, class_name: str = "cat", **kw) -> PhotoRecord:
    return PhotoRecord(photo_id, "owner@N00", class_name, LABELS[class_name], 48.123456,
                       11.987654, **kw)


def slice_of(class_name: str, ids, lo=0, hi=100, complete=True) -> SliceResult:
    records = tuple(rec(i, class_name) for i in ids)
    return SliceResult(class_name, lo, hi, len(records), records, complete)


@pytest.fixture
def catalog(tmp_path):
    with Catalog.open(tmp_path / "catalog.sqlite") as cat:
        yield cat


def test_open_uses_wal_and_reopen_keeps_everything(tmp_path):
    path = tmp_path / "c.sqlite"
    with Catalog.open(path) as cat:
        cat.add_slice(slice_of("cat", ["1", "2"]))
        cat.set_meta("config", {"per_class": 5})
        assert cat._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with Catalog.open(path) as cat:
        assert cat.count() == 2
        assert cat.done_slices() == {("cat", 0, 100)}
        assert cat.get_meta("config") == {"per_class": 5}


def test_other_schema_version_is_refused(tmp_path):
    path = tmp_path / "c.sqlite"
    with Catalog.open(path) as cat:
        cat.set_meta("schema_version", 99)
    with pytest.raises(RuntimeError, match="schema version 99"):
        Catalog.open(path)


def test_add_slice_twice_adds_nothing_new(catalog):
    assert catalog.add_slice(slice_of("cat", ["1", "2", "3"])) == 3
    assert catalog.add_slice(slice_of("cat", ["2", "3", "4"], lo=101, hi=200)) == 1
    assert catalog.count() == 4
    assert catalog.count(Status.SEARCHED) == 4
    assert catalog.done_slices() == {("cat", 0, 100), ("cat", 101, 200)}


def test_incomplete_slice_is_stored_but_not_done(catalog):
    catalog.add_slice(slice_of("cat", ["1"], complete=False))
    assert catalog.done_slices() == set()
    (row,) = catalog.slices_of("cat")
    assert (row.num_records, row.complete) == (1, False)


@pytest.mark.parametrize("order", [("cat", "dog"), ("dog", "cat")])
def test_photo_found_for_two_classes_is_ambiguous_in_any_order(catalog, order):
    for name in order:
        catalog.add_slice(slice_of(name, ["7", "8" if name == "cat" else "9"]))
    seven = catalog.get("7")
    assert seven.status is Status.AMBIGUOUS
    assert seven.error == "ambiguous: found for classes cat, dog"
    assert catalog.get("8").status is Status.SEARCHED
    assert catalog.get("9").status is Status.SEARCHED
    assert catalog.count() == 3  # stored once, kept for neither


@pytest.mark.parametrize("chunk", [2, 500])
def test_slice_colliding_with_two_earlier_classes(catalog, monkeypatch, chunk):
    # chunk=2 splits the slice's ids over several grouped queries.
    monkeypatch.setattr(catalog_module, "_IN_CHUNK", chunk)
    catalog.add_slice(slice_of("cat", ["1", "2", "3"]))
    catalog.add_slice(slice_of("dog", ["3", "4", "5"]))
    assert catalog.add_slice(slice_of("fox", ["6", "3", "1", "4", "3"])) == 1  # only 6 is new
    assert {pid: catalog.get(pid).error for pid in "123456"} == {
        "1": "ambiguous: found for classes cat, fox",
        "2": "",
        "3": "ambiguous: found for classes cat, dog, fox",
        "4": "ambiguous: found for classes dog, fox",
        "5": "",
        "6": "",
    }
    assert catalog.count(Status.AMBIGUOUS) == 3 and catalog.count(Status.SEARCHED) == 3
    assert catalog.get("3").class_name == "cat"  # the first class's record, kept for none


def test_failed_slice_commits_nothing(catalog):
    bad = SliceResult("cat", 0, 100, 2, (rec("1"), rec("2").evolve(owner=None)))
    with pytest.raises(sqlite3.IntegrityError):
        catalog.add_slice(bad)
    assert catalog.count() == 0 and catalog.done_slices() == set()


def test_records_pages_survive_updates_moving_rows_out_of_the_status(catalog):
    catalog.add_slice(slice_of("cat", [str(i) for i in range(1, 8)]))
    seen = []
    for record in catalog.records(Status.SEARCHED, page_size=2):
        seen.append(record.photo_id)
        catalog.update([record.evolve(status=Status.DOWNLOADED, sha256=f"s{record.photo_id}")])
    assert sorted(seen, key=int) == [str(i) for i in range(1, 8)]
    assert len(seen) == len(set(seen))
    assert catalog.count(Status.SEARCHED) == 0 and catalog.count(Status.DOWNLOADED) == 7


def test_update_round_trips_every_field(catalog):
    original = rec("5", clean_score=0.25, clean_rank=3, extra={"note": [1, 2]},
                   status=Status.KEPT, geo_status="ok", continent="Europe")
    catalog.update([original])
    back = catalog.get("5")
    assert back == original and back.extra == {"note": [1, 2]}
    catalog.update([original.evolve(clean_score=math.nan)])
    assert math.isnan(catalog.get("5").clean_score)  # NaN survives SQLite's NULL


def test_mark_duplicates_keeps_the_numerically_earliest_id(catalog):
    # Text order would put "10" first; Flickr ids are numbers, so "9" is the earliest.
    catalog.update([rec(i, status=Status.DOWNLOADED, sha256="same") for i in ("100", "10", "9")]
                   + [rec("11", status=Status.DOWNLOADED, sha256="other"),
                      rec("12", status=Status.DOWNLOAD_FAILED, sha256="")])
    assert catalog.mark_duplicates() == 2
    assert catalog.get("9").status is Status.DOWNLOADED
    for pid in ("10", "100"):
        dup = catalog.get(pid)
        assert dup.status is Status.DUPLICATE
        assert dup.error == "duplicate: same image as photo 9"
    assert catalog.get("11").status is Status.DOWNLOADED
    assert catalog.mark_duplicates() == 0  # idempotent


def test_counts_group_by_status_and_failure_reason(catalog):
    catalog.update([
        rec("1", status=Status.DOWNLOAD_FAILED, error="http_404"),
        rec("2", status=Status.DOWNLOAD_FAILED, error="http_404"),
        rec("3", status=Status.DOWNLOAD_FAILED, error="timeout"),
        rec("4", status=Status.REJECTED, error="rejected: best cat index ranks 9"),
        rec("5", status=Status.KEPT),
    ])
    assert catalog.counts() == {
        "download_failed": {"http_404": 2, "timeout": 1},
        "kept": {"": 1},
        "rejected": {"rejected": 1},
    }
    assert failure_reason("duplicate: same image as photo 9") == "duplicate"
    assert catalog.group_counts("class_name", "status") == {
        ("cat", "download_failed"): 3, ("cat", "kept"): 1, ("cat", "rejected"): 1}
    with pytest.raises(ValueError, match="group by record fields"):
        catalog.group_counts("1; DROP TABLE records")


def test_export_manifest_has_kept_rows_public_fields_rounded_coords(catalog, tmp_path):
    catalog.update([
        rec("2", status=Status.KEPT, clean_score=math.nan, error="", geo_status="ok",
            extra={"secret": 1}),
        rec("1", status=Status.KEPT, clean_score=0.5),
        rec("3", status=Status.REJECTED),
    ])
    path = tmp_path / "manifest.parquet"
    catalog.export_manifest(path, coord_decimals=1)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    assert frame["photo_id"].tolist() == ["1", "2"]
    assert frame["key"].tolist() == ["fm1", "fm2"]
    assert frame["latitude"].tolist() == [48.1, 48.1]
    assert frame["longitude"].tolist() == [12.0, 12.0]
    assert frame["clean_score"].dtype == "float64" and math.isnan(frame["clean_score"][1])
    assert not {"error", "extra", "status"} & set(frame.columns)
    assert frame["geo_status"].isna().tolist() == [True, False]   # not geocoded yet: null


def test_slice_errors_are_stored_counted_and_failed_ones_dropped(catalog):
    catalog.add_slice(SliceResult("cat", 0, 9, 5000, (rec("1"),), True, "over_cap"))
    catalog.add_slice(SliceResult("cat", 10, 19, 0, (), False, "bad_answer"))
    catalog.add_slice(SliceResult("cat", 20, 29, 0, (), False, "call_budget"))
    catalog.add_slice(slice_of("dog", ["2"], lo=0, hi=9))
    assert catalog.slice_errors() == {"cat": {"bad_answer": 1, "call_budget": 1,
                                              "over_cap": 1}}
    assert [r.error for r in catalog.slices_of("cat")] == ["over_cap", "bad_answer",
                                                           "call_budget"]
    assert catalog.drop_failed_slices("cat") == 2  # the done over_cap slice stays
    assert catalog.slice_errors() == {"cat": {"over_cap": 1}}
    catalog.add_slice(slice_of("cat", ["1"], lo=0, hi=9))  # a later success clears the error
    assert catalog.slice_errors() == {}


def test_a_catalog_from_before_slice_errors_opens(tmp_path):
    path = tmp_path / "old.sqlite"
    with Catalog.open(path) as cat:
        cat.add_slice(slice_of("cat", ["1"]))
        cat._conn.execute("ALTER TABLE slices DROP COLUMN error")
    with Catalog.open(path) as cat:
        assert cat.slices_of("cat")[0].error == "" and cat.done_slices() == {("cat", 0, 100)}
        cat.add_slice(SliceResult("cat", 101, 200, 0, (), False, "bad_answer"))
        assert cat.slice_errors() == {"cat": {"bad_answer": 1}}


def test_mark_bad_ids_catches_what_an_older_build_let_in(catalog):
    bad = ["/tmp/x", "../../evil", "1/../../x", "12\x0034", "9" * 21, "", "\u0661\u0662"]
    catalog.update([rec(pid, status=Status.DOWNLOADED, sha256="ab") for pid in bad]
                   + [rec("9" * 20, status=Status.KEPT), rec("5"),
                      rec("x", status=Status.AMBIGUOUS, error="ambiguous: found for cat, dog")])
    assert catalog.mark_bad_ids() == len(bad)
    for pid in bad:
        got = catalog.get(pid)
        assert (got.photo_id, got.status, got.error, got.sha256) == (
            pid, Status.DOWNLOAD_FAILED, "bad_id", "")
    assert catalog.get("9" * 20).status is Status.KEPT and catalog.get("5").error == ""
    assert catalog.get("x").status is Status.AMBIGUOUS
    assert catalog.mark_bad_ids() == 0
