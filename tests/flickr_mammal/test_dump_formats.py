"""YFCC100M in the forms users have (AWS SQLite file, the yfcc100m tool's gzipped JSON lines, a
Hugging Face metadata.jsonl): the same matches as the TSV, resumable like it, the real data's
quirks handled in every format."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from flickr_mammal.catalog import Catalog
from flickr_mammal.dump import search as dump_search
from flickr_mammal.dump.read import MetadataConfig
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal import dump_format_fixtures as f
from tests.flickr_mammal.test_dump_fastpath import reference, scanned, tricky_rows
from tests.flickr_mammal.test_metadata import catalog_rows, kill_mid_scan_then_resume

LAYOUTS = ("sqlite", "sqlite-untyped", "jsonl-hf", "jsonl.gz", "tool-folder")


def write(layout: str, rows: list[dict], tmp: Path) -> Path:
    """``rows`` in one of the real layouts."""
    if layout == "sqlite":
        return f.write_sqlite(rows, tmp / "yfcc100m_dataset.sql")
    if layout == "sqlite-untyped":
        return f.write_sqlite(rows, tmp / "untyped.sql", typed=False)
    if layout == "jsonl-hf":
        return f.write_jsonl(rows, tmp / "metadata.jsonl", extra=True)
    if layout == "jsonl.gz":
        return f.write_jsonl(rows, tmp / "meta.jsonl.gz")
    return f.write_tool_folder(rows, tmp / "meta")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_matches_what_the_tsv_matches(tmp_path, layout):
    rows = tricky_rows()
    want = scanned(tmp_path / "tsv", d.write_tsv(rows, tmp_path / "d.tsv"), chunk_bytes=1 << 16)
    assert want["candidates"] > 100 and len(want["ambiguous"]) > 20 and want["dropped"]["bad_id"]
    dump = write(layout, rows, tmp_path)
    expected = {"sqlite": "sqlite", "tool-folder": "jsonl"}.get(layout.split("-")[0], "jsonl")
    assert MetadataConfig(str(dump)).format == expected
    assert scanned(tmp_path / "out", dump, chunk_bytes=1 << 16) == want


@pytest.mark.parametrize("layout", ["sqlite", "jsonl-hf", "jsonl.gz", "tool-folder"])
def test_an_interrupted_scan_resumes_to_the_same_result(tmp_path, layout, monkeypatch):
    rows = tricky_rows()
    dump = write(layout, rows, tmp_path)
    full = scanned(tmp_path / "full", dump, chunk_bytes=1 << 16)
    real, calls = dump_search.stage_rows, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C between two chunk commits
        return real(*args, **kwargs)

    monkeypatch.setattr(dump_search, "stage_rows", dying)
    with pytest.raises(KeyboardInterrupt):
        scanned(tmp_path / "cut", dump, chunk_bytes=1 << 16, readers=2)
    with Catalog.open(tmp_path / "cut" / "catalog.sqlite") as cat:
        done = cat.connection.execute("SELECT count(*) FROM dump_chunks").fetchone()[0]
    assert done == 2
    monkeypatch.setattr(dump_search, "stage_rows", real)
    assert scanned(tmp_path / "cut", dump, chunk_bytes=1 << 16) == full


def test_sqlite_chunks_are_rowid_ranges_resumed_after_the_last_committed_rowid(tmp_path):
    dump = f.write_sqlite(tricky_rows(300), tmp_path / "y.sql")
    with sqlite3.connect(dump) as conn:  # rowids with gaps, as after deletions
        conn.execute("DELETE FROM yfcc100m_dataset WHERE rowid % 7 = 3")
        rowids = [r for (r,) in conn.execute("SELECT rowid FROM yfcc100m_dataset ORDER BY 1")]
    assert len(rowids) == 257
    reader = MetadataConfig(str(dump)).reader
    fields = {"photo_id": "photoid", "title": "title"}
    chunks = list(reader.chunks(dump, (), fields, ("title",), 1 << 16, []))
    assert [c.num_rows for c in chunks] == [128, 128, 1]  # 2,048 rows per MB
    assert [(c.start, c.stop) for c in chunks] == \
        [(-(1 << 63), rowids[127]), (rowids[127], rowids[255]), (rowids[255], rowids[256])]
    resumed = list(reader.chunks(dump, (), fields, ("title",), 1 << 16, [(0, rowids[127])]))
    assert [(c.index, c.start, c.stop) for c in resumed] == \
        [(c.index, c.start, c.stop) for c in chunks[1:]]
    assert resumed[0].rows_at([0]) == chunks[1].rows_at([0])


@pytest.mark.parametrize("gaps", [False, True])
def test_sqlite_chunks_read_at_once_are_the_chunks_read_one_by_one(tmp_path, gaps):
    # Reader threads guess where the next chunks start (no gaps: 128 rowids a chunk); a
    # wrong guess (rows deleted) is read again from the true start, so the chunks are the same.
    dump = f.write_sqlite(tricky_rows(700), tmp_path / "y.sql")
    if gaps:
        with sqlite3.connect(dump) as conn:
            conn.execute("DELETE FROM yfcc100m_dataset WHERE rowid % 7 = 3 OR "
                         "rowid BETWEEN 300 AND 520")
    reader = MetadataConfig(str(dump)).reader
    fields = {"photo_id": "photoid", "title": "title"}

    def seen(chunks):
        return [(c.index, c.start, c.stop, c.num_rows, c.texts["title"].to_pylist())
                for c in chunks if c is not None]

    one = seen(reader.chunks(dump, (), fields, ("title",), 1 << 16, []))
    assert len(one) >= 4
    tasks = reader.tasks(dump, (), fields, ("title",), 1 << 16, [])
    assert seen(dump_search._in_order(tasks, lambda task: task(), 3)) == one
    resumed = reader.tasks(dump, (), fields, ("title",), 1 << 16, [(1, one[1][2])])
    assert seen(dump_search._in_order(resumed, lambda task: task(), 2)) == one[2:]


@pytest.mark.parametrize("layout", ["sqlite", "tool-folder"])
def test_kill_9_mid_scan_then_resume_matches(tmp_path, layout):
    kill_mid_scan_then_resume(write(layout, tricky_rows(), tmp_path), tmp_path)


SECRET_40 = "0123456789abcdef0123456789abcdef01234567"
LONG = "x+" * 100_000 + "my+dog"  # 200 KB: past Python csv's default field limit (128 KB)


def quirk_rows() -> list[dict[str, Any]]:
    """Typed cells (as JSON or an untyped SQLite table hold them): ids and dates as numbers or
    text, a numeric title, a 200 KB description, secrets of 2 and 40 characters, no coordinates."""
    def q(pid: Any, **cells: Any) -> dict[str, Any]:
        row: dict[str, Any] = d.row(int(pid), url="")
        row.update({"photoid": pid, "dateuploaded": d.LO + 1000, **cells})
        return row

    return [q(7001, title="My+Cat%21+%28at+home%29"), q("7002", description=LONG),
            q(7003, title="zebra", secret="ab", dateuploaded=str(d.LO + 7)),
            q(7004, title="zebra", secret=SECRET_40),
            q(7005, title="cat", latitude=None, longitude=None),
            q(7006, title=2012, usertags="sea+lion")]


def _write_quirks(form: str, rows: list[dict[str, Any]], tmp: Path) -> Path:
    if form == "tsv":
        cells = [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
        return d.write_tsv(cells, tmp / "q.tsv")
    if form == "sqlite":
        return f.write_sqlite(rows, tmp / "q.sql", typed=False)
    text = "".join(json.dumps({k: r[k] for k in f.SQLITE_COLUMNS}) + "\n" for r in rows)
    text = text.encode()
    path = tmp / ("q.jsonl.gz" if form == "jsonl.gz" else "q.jsonl")
    path.write_bytes(gzip.compress(text) if form == "jsonl.gz" else text)
    return path


@pytest.mark.parametrize("form", ["tsv", "sqlite", "jsonl", "jsonl.gz"])
def test_the_real_datas_quirks_in_every_format(tmp_path, form):
    dump = _write_quirks(form, quirk_rows(), tmp_path)
    got = scanned(tmp_path / "out", dump)
    assert (got["rows"], got["candidates"], got["malformed_rows"]) == (6, 5, 0)
    assert got["dropped"]["no_coordinates"] == 1
    assert got["chosen"] == {"7001": "cat", "7002": "dog", "7003": "zebra", "7004": "zebra",
                             "7006": "sea lion"}
    rows = catalog_rows(tmp_path / "out")
    assert rows["7001"][5] == "My Cat! (at home)"  # + and %XX decoded, as from the TSV
    assert rows["7003"][4] == "https://live.staticflickr.com/7205/7003_ab_z.jpg"
    assert rows["7004"][4] == f"https://live.staticflickr.com/7205/7004_{SECRET_40}_z.jpg"
    assert rows["7003"][7] == d.LO + 7 and rows["7006"][5] == "2012"


def test_the_same_rows_in_every_format_give_the_reference(tmp_path):
    """The row-by-row reference of the documented rules, from the TSV's cells."""
    rows = tricky_rows(bad_id=False)
    from flickr_mammal.dump.read import FIELDS

    want = reference([{k: r[c] for k, c in FIELDS.items()} for r in rows], url_encoded=True)
    for layout in ("sqlite", "jsonl.gz"):
        assert scanned(tmp_path / layout, write(layout, rows, tmp_path)) == want, layout
