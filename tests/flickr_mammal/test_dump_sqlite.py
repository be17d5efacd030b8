"""The AWS SQLite copy of YFCC100M (flickr_mammal/dump/formats/sqlite.py): opened read-only,
bad cells counted, a missing table or column a one-line error saying what was found."""

from __future__ import annotations

import sqlite3

import pyarrow as pa
import pytest

from flickr_mammal.dump.formats.sqlite import SQLITE_COLUMNS, connect
from flickr_mammal.dump.read import MetadataConfig
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal import dump_format_fixtures as f
from tests.flickr_mammal.test_dump_malformed import _fail, _ids, _scan


def test_told_by_its_magic_whatever_the_name(tmp_path):
    dump = f.write_sqlite(d.RULE_ROWS, tmp_path / "metadata.tsv")
    assert MetadataConfig(str(dump)).format == "sqlite"
    assert _scan(tmp_path / "out", dump)["rows"] == len(d.RULE_ROWS)


def test_opened_read_only_and_left_unchanged(tmp_path):
    dump = f.write_sqlite(d.RULE_ROWS, tmp_path / "y.sql")
    before = dump.read_bytes()
    dump.chmod(0o444)
    _scan(tmp_path / "out", dump)
    assert dump.read_bytes() == before
    assert not list(tmp_path.glob("y.sql-*"))  # no journal, no WAL beside it
    conn = connect(dump)
    try:
        conn.execute("CREATE TABLE t (x)")
        raise AssertionError("a write went through")
    except sqlite3.OperationalError as exc:
        assert "readonly" in str(exc)


def test_bad_cells_are_counted_and_the_scan_goes_on(tmp_path):
    dump = f.write_sqlite([d.row(i, "cat") for i in (1, 2, 3, 4)], tmp_path / "y.sql",
                          typed=False)
    with sqlite3.connect(dump) as conn:
        conn.execute("UPDATE yfcc100m_dataset SET title = ? WHERE photoid = '2'",
                     (b"cat \xff",))  # a blob that is not UTF-8
        conn.execute("UPDATE yfcc100m_dataset SET dateuploaded = 1e400 WHERE photoid = '3'")
        conn.execute("UPDATE yfcc100m_dataset SET description = x'00ff' WHERE photoid = '4'")
    meta = _scan(tmp_path / "out", dump)
    assert (meta["rows"], meta["malformed_rows"], meta["candidates"]) == (2, 3, 1)
    assert _ids(tmp_path / "out") == {"1"}


def test_missing_table_or_columns_are_one_line_errors(tmp_path, capsys):
    other = f.write_sqlite(d.RULE_ROWS, tmp_path / "other.sql", table="photos")
    err = _fail(tmp_path, other, capsys)
    assert "has no table yfcc100m_dataset (tables: photos)" in err
    short = f.write_sqlite(d.RULE_ROWS, tmp_path / "short.sql",
                           columns=tuple(c for c in SQLITE_COLUMNS if c != "latitude"))
    err = _fail(tmp_path, short, capsys)
    assert "no column 'latitude' for field latitude" in err and "(columns: photoid, uid" in err
    renamed = tmp_path / "renamed.sql"
    renamed.write_bytes(short.read_bytes())
    with sqlite3.connect(renamed) as conn:
        conn.execute("ALTER TABLE yfcc100m_dataset ADD COLUMN lat REAL")
    assert _scan(tmp_path / "ok", renamed, columns=(("latitude", "lat"),))["rows"] == 15
    junk = tmp_path / "junk.sql"
    junk.write_bytes(b"SQLite format 3\x00" + b"\x07" * 4000)
    assert "is not a readable SQLite database" in _fail(tmp_path, junk, capsys)
    err = _fail(tmp_path, other, capsys, "--metadata-format", "jsonl")
    assert "holds a SQLite file" in err and "expected a JSON lines file" in err
    err = _fail(tmp_path, other, capsys, "--metadata-format", "csv")
    assert "unknown" in err and all(n in err for n in ("jsonl", "sqlite", "parquet", "yfcc100m"))


@pytest.mark.parametrize("scanner", [True, False], ids=["hyperscan", "re2"])
@pytest.mark.parametrize("title", ["my\ncat", "my\x1ecat", "sun\nset"],
                         ids=["row-separator", "cell-separator", "row-separator-no-class"])
def test_a_cell_holding_a_separator_is_read_row_by_row(tmp_path, monkeypatch, scanner, title):
    """The fast path joins a chunk's rows by newlines and each row's cells by U+001E: a cell
    holding either, a class named in it or not, sends the chunk to the row-by-row read, with
    the row-by-row result (with the whole-chunk scanner, and with RE2 per row)."""
    from flickr_mammal.dump import linescan
    from flickr_mammal.dump.formats import sqlite as fmt

    if scanner and not linescan.available():
        pytest.skip("hyperscan is not installed")
    if not scanner:
        monkeypatch.setattr(linescan, "hyperscan", None)
    linescan.line_scanner.cache_clear()
    rows = [d.row(i, "sunset") for i in range(1, 41)]
    rows[20]["title"] = title
    rows[30]["title"] = "cat"
    dump = f.write_sqlite(rows, tmp_path / "y.sql")
    clean = f.write_sqlite(rows[:20], tmp_path / "clean.sql")
    slow, whole = fmt._Reader._read_rows, fmt._Hits.rows
    calls, fetched = [], []
    monkeypatch.setattr(fmt._Reader, "_read_rows",
                        lambda self, last: calls.append(last) or slow(self, last))
    monkeypatch.setattr(fmt._Hits, "rows",
                        lambda self, ids, *a: fetched.append(len(ids)) or whole(self, ids, *a))
    try:
        assert _scan(tmp_path / "o-clean", clean)["rows"] == 20 and calls == []  # fast path
        meta = _scan(tmp_path / "out", dump)
    finally:
        linescan.line_scanner.cache_clear()
    named = "cat" in title
    assert len(calls) == 1 and (meta["rows"], meta["candidates"]) == (40, 1 + named)
    assert _ids(tmp_path / "out") == ({"21", "31"} if named else {"31"})
    assert max(fetched) <= 2  # only the hits' full rows are read, never the whole chunk's


def test_a_database_being_written_is_read_without_the_immutable_promise(tmp_path):
    dump = f.write_sqlite(d.RULE_ROWS, tmp_path / "live.sql")
    writer = sqlite3.connect(dump)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("INSERT INTO yfcc100m_dataset (photoid, title) VALUES (999, 'late cat')")
    writer.commit()  # the row sits in live.sql-wal until a checkpoint
    try:
        assert (tmp_path / "live.sql-wal").exists()
        conn = connect(dump)
        count = conn.execute("SELECT count(*) FROM yfcc100m_dataset").fetchone()[0]
        conn.close()
        assert count == len(d.RULE_ROWS) + 1  # immutable would have skipped the WAL's row
    finally:
        writer.close()


def test_chunks_read_with_apsw_are_those_of_the_standard_library(tmp_path, monkeypatch):
    """apsw (a newer SQLite, about twice as fast here) and the standard library's sqlite3 read
    the same chunks: texts, rowids, malformed rows, also where the fast path falls back."""
    from flickr_mammal.dump.formats import sqlite as fmt
    from flickr_mammal.dump.match import ClassMatcher
    from tests.flickr_mammal.test_dump_fastpath import tricky_rows
    from tests.flickr_mammal.test_dump_prefilter import MAMMALS

    if fmt.apsw is None:
        pytest.skip("apsw not installed")
    dump = f.write_sqlite(tricky_rows(400), tmp_path / "y.sql", typed=False)
    with sqlite3.connect(dump) as conn:
        conn.execute("UPDATE yfcc100m_dataset SET title = ? WHERE rowid = 5", (b"cat \xff",))
        conn.execute("UPDATE yfcc100m_dataset SET title = 'my\x1fcat' WHERE rowid = 300")
        conn.execute("DELETE FROM yfcc100m_dataset WHERE rowid % 11 = 4")
    reader = MetadataConfig(str(dump)).reader
    fields = {"photo_id": "photoid", "title": "title", "tags": "usertags"}
    matcher = ClassMatcher(MAMMALS, url_encoded=True)

    def seen():
        out = []
        for raw in (None, matcher.raw_filter()):
            for c in reader.chunks(dump, (), fields, ("title", "tags"), 1 << 16, [],
                                   raw_filter=raw):
                texts = {k: v.cast(pa.binary()).to_pylist() for k, v in c.texts.items()}
                ids = c.rows_at(list(range(len(texts["title"]))))
                out.append((c.index, c.start, c.stop, c.num_rows, c.malformed, texts, ids))
        return out

    with_apsw = seen()
    assert len(with_apsw) >= 6 and sum(c[4] for c in with_apsw) >= 2  # bad cells counted
    monkeypatch.setattr(fmt, "apsw", None)
    assert seen() == with_apsw
