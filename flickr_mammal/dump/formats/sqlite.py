"""The SQLite copy of YFCC100M (AWS Multimedia Commons ``yfcc100m_dataset.sql``).

One table, ``yfcc100m_dataset``, with the first release's 23 columns (:data:`SQLITE_COLUMNS`);
text keeps the TSV's URL-encoding (decoded for matching, as for the TSV); a cell may be stored
as text or as a number (SQLite's types are per value). The file is opened read-only
(``mode=ro``; ``immutable`` too, so no lock or journal is looked for, unless a ``-wal`` or
``-journal`` file beside it says another program may be writing).

Chunks are rowid ranges, ``WHERE rowid > last ORDER BY rowid LIMIT n`` (n = 2,048 rows per MB
of ``--metadata-chunk-mb``, YFCC100M rows being about 500 bytes): a chunk's resume position is
the last rowid it read, so a killed scan continues right after the last committed one, without
reading what came before. Each chunk reads the text columns only (``CAST(... AS TEXT)``, as
bytes, checked as UTF-8 by pyarrow). Given the scan's raw-text prefilter, the chunk comes as one
string, a line per row (its rowid and texts); one Hyperscan pass over it finds the lines to
look at (:mod:`~flickr_mammal.dump.linescan`; RE2 line by line without it), and only the lines
the prefilter keeps are split into cells. Their full rows are read by rowid in the same reader
thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from flickr_mammal.dump.errors import DumpColumnError, DumpFileError
from flickr_mammal.dump.formats import (
    Chunk,
    ChunkTask,
    DumpFormat,
    register_format,
    resume_after,
    text_cell,
)
from flickr_mammal.dump.formats.lines import RawFilter, RawText, scanned_lines, split_lines
from flickr_mammal.dump.formats.parquet import text_column

MAGIC = b"SQLite format 3\x00"
TABLE = "yfcc100m_dataset"
SQLITE_COLUMNS: tuple[str, ...] = (
    "photoid", "uid", "unickname", "datetaken", "dateuploaded", "capturedevice", "title",
    "description", "usertags", "machinetags", "longitude", "latitude", "accuracy", "pageurl",
    "downloadurl", "licensename", "licenseurl", "serverid", "farmid", "secret",
    "secretoriginal", "ext", "marker",
)
try:  # optional: a faster SQLite for the chunk reads (fast_connect)
    import apsw
except ImportError:  # pragma: no cover - depends on the install
    apsw = None
_DB_ERRORS: tuple[type[Exception], ...] = (sqlite3.DatabaseError,) + (
    (apsw.Error,) if apsw is not None else ())
ROWS_PER_MB = 2048
# Lines of a chunk's joined rows a scan splits whatever they say: those not starting with a
# digit (a row begins with its rowid), as a whole-chunk scanner finds them.
ODD_ROWS = (r"^[^0-9]",)
_HITS_PER_QUERY = 500  # rowids per IN (...) (SQLite's default limit is 32,766 variables)


def _uri(path: Path) -> str:
    """Read-only; ``immutable`` (no lock or journal looked for) unless a ``-wal`` or
    ``-journal`` file beside it says another program may be writing."""
    path = Path(path).resolve()
    busy = any(path.with_name(path.name + s).exists() for s in ("-wal", "-journal"))
    return path.as_uri() + ("?mode=ro" if busy else "?mode=ro&immutable=1")


def fast_connect(path: Path) -> Any:
    """A read-only apsw connection for the chunks' aggregate reads, or None without apsw.

    apsw bundles a recent SQLite: the chunk query (texts joined by ``group_concat``) measured
    about twice as fast as through the standard library's SQLite (3.40 here), same rows."""
    if apsw is None:
        return None
    return apsw.Connection(_uri(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to ``path``; DumpFileError when it is no readable database."""
    path = Path(path).resolve()
    uri = _uri(path)
    try:
        conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        raise DumpFileError(f"{path} is not a readable SQLite database ({exc}); expected the "
                            f"YFCC100M SQLite file with table {TABLE}") from None
    conn.text_factory = _decoded
    return conn


def _decoded(raw: bytes) -> str:
    """Cells that are not UTF-8 stay readable (a replacement character) in the full rows."""
    return raw.decode("utf-8", "replace")


def table_columns(conn: sqlite3.Connection, path: Path) -> list[str]:
    """The columns of the YFCC100M table; a one-line error naming the tables found when the
    file has none such."""
    tables = [n for (n,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
    if TABLE not in tables:
        raise DumpColumnError(f"{path} has no table {TABLE} (tables: "
                              f"{', '.join(tables) or 'none'}); expected the YFCC100M SQLite "
                              "file (AWS Multimedia Commons yfcc100m_dataset.sql)")
    columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{TABLE}")')]
    try:
        conn.execute(f'SELECT rowid FROM "{TABLE}" LIMIT 1').fetchall()
    except sqlite3.Error:
        raise DumpColumnError(f"{path}: table {TABLE} has no rowid (a view or a WITHOUT ROWID "
                              "table); expected an ordinary table to read in rowid ranges"
                              ) from None
    return columns


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


class _Hits:
    """The full rows of some rowids, on a connection of its own (the scan reads chunks in a
    reader thread and asks for hit rows from the main one)."""

    def __init__(self, path: Path, fields: dict[str, str], texts: Sequence[str]) -> None:
        self.path, self.texts = path, set(texts)
        self.conn: sqlite3.Connection | None = None
        self.names = names = list(fields)
        self.select = (f"SELECT rowid, {', '.join(_quote(fields[f]) for f in names)} "
                       f"FROM {_quote(TABLE)} WHERE rowid IN ")

    def rows(self, rowids: list[int],
             conn: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
        """The rows of ``rowids``, in order; on ``conn`` (a :func:`connect` connection), else
        on a connection of this object's own."""
        if conn is None:
            if self.conn is None:
                self.conn = connect(self.path)
            conn = self.conn
        found: dict[int, dict[str, Any]] = {}
        for k in range(0, len(rowids), _HITS_PER_QUERY):
            part = rowids[k:k + _HITS_PER_QUERY]
            sql = self.select + f"({', '.join('?' * len(part))})"
            for rowid, *cells in conn.execute(sql, part):
                found[rowid] = {n: text_cell(c) if n in self.texts else c
                                for n, c in zip(self.names, cells, strict=True)}
        return [found[r] for r in rowids]


class _Reader:
    """One chunk's rowids and text columns, ``WHERE rowid > last ORDER BY rowid LIMIT n``.

    Fast path: SQLite concatenates each column of the chunk into one string (``group_concat``,
    cells separated by U+001F, which URL-encoded text never holds), split by pyarrow: no
    Python object per cell (measured about a third less CPU than fetching rows). All
    aggregates of one query see the rows in the same order, so ids and texts stay aligned.
    With a raw prefilter, one aggregate: a line per row, which carries its rowid. A chunk
    where that cannot be trusted (a cell holding a separator, text that is not UTF-8) is read
    again row by row, where a cell that is not UTF-8 makes its row malformed."""

    def __init__(self, conn: sqlite3.Connection, names: list[str], limit: int,
                 raw_filter: RawFilter | None = None, fast: Any = None) -> None:
        self.conn, self.names, self.limit, self.raw_filter = conn, names, limit, raw_filter
        self.fast = fast  # an apsw connection for the aggregate reads (fast_connect), or None
        self.whole = False  # the last read went row by row: every row, none filtered
        inner = (f"SELECT rowid AS r, {', '.join(_quote(n) for n in names)} FROM "
                 f"{_quote(TABLE)} WHERE rowid > ? ORDER BY rowid LIMIT ?")
        cells = [f"coalesce(CAST({_quote(n)} AS TEXT), '')" for n in names]
        # Aggregates as BLOBs: bytes from either driver, checked as UTF-8 by pyarrow.
        concat = ", ".join(f"CAST(group_concat({c}, char(31)) AS BLOB)" for c in cells)
        self.concat = (f"SELECT count(*), max(r), CAST(group_concat(r) AS BLOB), {concat} "
                       f"FROM ({inner})")
        # With a raw prefilter: one aggregate for all, a line per row (rows joined by newlines,
        # which URL-encoded text never holds), its rowid then its cells, joined by U+001E (no
        # letter or digit, so a boundary to the prefilter, and never in URL-encoded text).
        row = f"r || char(30) || {' || char(30) || '.join(cells)}"
        if fast is not None:  # SQLite >= 3.44: concat() reads NULL as '', in one string
            row = f"concat(r, char(30), {', char(30), '.join(_quote(n) for n in names)})"
        self.joined = (f"SELECT count(*), max(r), CAST(group_concat({row}, char(10)) AS BLOB) "
                       f"FROM ({inner})")
        self.rows = (f"SELECT rowid, {', '.join(f'CAST({_quote(n)} AS TEXT)' for n in names)} "
                     f"FROM {_quote(TABLE)} WHERE rowid > ? ORDER BY rowid LIMIT ?")

    def read(self, last: int) -> tuple[int, Any, dict[str, Any], int, int] | None:
        """(last rowid read, rowids kept as an int64 array, their texts by column name,
        malformed rows, rows read) of the chunk after rowid ``last``; None past the table's
        end. With a raw prefilter, the rowids and texts are those of the rows it keeps."""
        import pyarrow as pa
        import pyarrow.compute as pc

        self.whole = False
        if self.raw_filter is not None:
            return self._read_joined(last, self.raw_filter)
        count, top, ids, *blobs = self._one(self.concat, last)
        if not count:
            return None
        try:
            rowids = pc.cast(_split(ids, ","), pa.int64())
            texts = {n: _split(b, "\x1f") for n, b in zip(self.names, blobs, strict=True)}
        except pa.ArrowInvalid:  # text that is not UTF-8
            return self._read_rows(last)
        if all(len(c) == count for c in texts.values()) and len(rowids) == count:
            return top, rowids, texts, 0, count
        return self._read_rows(last)  # some cell holds the separator

    def _read_joined(self, last: int,
                     raw_filter: RawFilter) -> tuple[int, Any, dict[str, Any], int, int] | None:
        import pyarrow as pa

        count, top, blob = self._one(self.joined, last)
        if not count:
            return None
        scanner = raw_filter.scanner(ODD_ROWS) if isinstance(raw_filter, RawText) else None
        if scanner is None:
            try:
                rows = split_lines(blob).cast(pa.large_string())
            except pa.ArrowInvalid:  # text that is not UTF-8
                return self._read_rows(last)
            if len(rows) != count:  # some cell holds a newline
                return self._read_rows(last)
            picked = raw_filter(rows)
        else:
            found = scanned_lines(blob, scanner)
            if found is None:  # text that is not UTF-8
                return self._read_rows(last)
            found_data, offsets = found
            rows = split_lines(found_data, offsets).cast(pa.large_string())
            # The lines the filter keeps, and those not shaped "rowid U+001E ...": a row cut
            # by a newline in one of its cells (its parts do not add up, below).
            picked = np.union1d(raw_filter(rows), np.flatnonzero(~_rowid_first(
                found_data, offsets))).astype(np.int64)
        parts = [r.rstrip("\n").split("\x1e") for r in rows.take(picked).to_pylist()]
        try:
            rowids = [int(p[0]) for p in parts]
        except ValueError:  # a line that is not a whole row
            return self._read_rows(last)
        if (any(len(p) != len(self.names) + 1 for p in parts)
                or any(a >= b for a, b in zip([last, *rowids], [*rowids, top + 1], strict=True))):
            return self._read_rows(last)  # some cell holds a newline
        texts = {n: pa.array([p[k] for p in parts], pa.string())
                 for k, n in enumerate(self.names, start=1)}
        return top, pa.array(rowids, pa.int64()), texts, 0, count

    def _one(self, sql: str, last: int) -> Any:
        """The one row of an aggregate query over the chunk after ``last``."""
        db = self.fast if self.fast is not None else self.conn
        return db.execute(sql, (last, self.limit)).fetchone()

    def _read_rows(self, last: int) -> tuple[int, Any, dict[str, Any], int, int]:
        import pyarrow as pa
        import pyarrow.compute as pc

        self.whole = True
        raw = self.conn.execute(self.rows, (last, self.limit)).fetchall()
        columns = list(zip(*raw, strict=True))
        rowids = pa.array(columns[0], pa.int64())
        texts, bad = {}, pa.array([False] * len(raw), pa.bool_())
        for name, cells in zip(self.names, columns[1:], strict=True):
            texts[name], mask = text_column(pa.array(cells, pa.binary()))
            bad = pc.or_(bad, mask)
        keep = pc.invert(bad)
        malformed = int(pc.sum(bad).as_py() or 0)
        return (raw[-1][0], rowids.filter(keep), {n: c.filter(keep) for n, c in texts.items()},
                malformed, len(raw) - malformed)


def _rowid_first(data: bytes, offsets: np.ndarray) -> np.ndarray:
    """Per line (``offsets`` as :func:`line_offsets` gives them): does it start with a digit?"""
    raw = np.frombuffer(data, np.uint8)
    starts = offsets[:-1]
    if not len(raw):
        return np.zeros(len(starts), bool)
    first = raw[np.minimum(starts, len(raw) - 1)]
    return (first >= ord("0")) & (first <= ord("9")) & (offsets[1:] > starts)


def _split(blob: bytes | str, sep: str) -> Any:
    """The cells of one concatenated column (raises ArrowInvalid unless UTF-8)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    whole = pa.array([blob], pa.large_binary()).cast(pa.large_string())
    return pc.split_pattern(whole, sep).flatten().cast(pa.string())


class YfccSqlite(DumpFormat):
    name = "sqlite"
    description = "SQLite file (YFCC100M, AWS Multimedia Commons)"
    folder_glob = "*.sql|*.sqlite|*.db"
    url_encoded = True
    # With the standard library's SQLite (3.40 here), one read at a time: two threads reading
    # two chunks measured slower than one (it serialises its string building on a lock of its
    # own); apsw's SQLite runs two at once faster than one.
    max_readers = 1 if apsw is None else None

    def detect(self, head: bytes) -> bool:
        return head.startswith(MAGIC)

    def layout(self, path: Path) -> tuple[tuple[str, ...], list[str]]:
        conn = connect(path)
        try:
            return (), table_columns(conn, path)
        finally:
            conn.close()

    def tasks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
              text_fields: Sequence[str], chunk_bytes: int,
              done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
              ) -> Iterator[ChunkTask]:
        index, last = resume_after(done, -(1 << 63))
        texts = {f: fields[f] for f in text_fields if f in fields}
        names = sorted(set(texts.values()))
        limit = max(1, chunk_bytes * ROWS_PER_MB >> 20)
        conn = connect(path)
        try:
            # Two subqueries: SQLite looks up min() or max() alone in the rowid B-tree, but
            # scans the whole table for both in one query (0.26 s per million rows).
            low, top = conn.execute(f"SELECT (SELECT min(rowid) FROM {_quote(TABLE)}), "
                                    f"(SELECT max(rowid) FROM {_quote(TABLE)})").fetchone()
        finally:
            conn.close()
        hits = _Hits(path, fields, texts)
        chain = _Chain(index, last)
        guess = last
        # A chunk starts where the one before stopped, known only once that one is read. The
        # tasks guess (a table without gaps: ``limit`` rowids a chunk) so several read at
        # once; a task whose guess was wrong reads again from the true start (below), after
        # which each task is made once its start is known.
        while top is not None and guess < top:
            yield partial(self._chunk, path, chain, index, guess, names, limit, raw_filter,
                          texts, hits)
            if chain.ended:
                return
            if chain.guessing:
                guess = max(guess, low - 1) + limit
            else:
                guess = chain.stop_before(index + 1)
                if guess is None:  # the table ended (or a task failed, which raises there)
                    return
            index += 1

    def _chunk(self, path: Path, chain: _Chain, index: int, guess: int, names: list[str],
               limit: int, raw_filter: RawFilter | None, texts: dict[str, str],
               hits: _Hits) -> Chunk | None:
        conn = fast = stop = None
        try:  # whatever happens, the chunk's stop is published (the next task waits for it)
            conn = connect(path)
            conn.text_factory = bytes  # UTF-8 is checked by pyarrow, column by column
            fast = fast_connect(path)
            reader = _Reader(conn, names, limit, raw_filter, fast)
            read = reader.read
            start = chain.stop_before(index) if index == chain.first else None
            got = read(guess) if start is None else read(start)
            start = chain.stop_before(index) if start is None else start
            if start is None:  # a chunk before this one ended the table
                return None
            if start != guess:
                chain.guessing = False
                got = read(start)
            if got is None:
                return None
            last, rowids, columns, malformed, num_rows = got
            stop = last if num_rows + malformed == limit else None  # a short chunk: the end
            if raw_filter is None or reader.whole:  # every row: its hits read when asked for
                rows_at = partial(_rows_of, hits, rowids)
            else:  # the raw prefilter's few rows, read whole here (in a reader thread)
                conn.text_factory = _decoded
                rows_at = partial(_picked, hits.rows(rowids.to_pylist(), conn))
            return Chunk(index, start, last, {f: columns[c] for f, c in texts.items()},
                         rows_at, num_rows, malformed)
        except _DB_ERRORS as exc:
            raise DumpFileError(f"{path}: rows after rowid {guess} cannot be read ({exc}); "
                                "expected a complete SQLite file") from None
        finally:
            chain.stopped(index, stop)
            for db in (conn, fast):
                if db is not None:
                    db.close()


def _rows_of(hits: _Hits, rowids: Any, picked: list[int]) -> list[dict[str, Any]]:
    return hits.rows(rowids.take(picked).to_pylist())


def _picked(rows: list[dict[str, Any]], picked: list[int]) -> list[dict[str, Any]]:
    return [rows[k] for k in picked]


class _Chain:
    """Where each chunk stops (its last rowid), published by its task as it ends (None: the
    table ends there, or the task failed), waited for by the next chunk's task."""

    def __init__(self, first: int, start: int) -> None:
        self.first, self.start = first, start
        self.stops: dict[int, int | None] = {}
        self.guessing = True  # every guess right so far
        self.ended = False  # some chunk was the last (or failed)
        self.cond = threading.Condition()

    def stopped(self, index: int, stop: int | None) -> None:
        with self.cond:
            self.stops[index] = stop
            self.ended = self.ended or stop is None
            self.cond.notify_all()

    def stop_before(self, index: int) -> int | None:
        """The start of chunk ``index``: the stop of the one before, once its task ended."""
        if index == self.first:
            return self.start
        with self.cond:
            self.cond.wait_for(lambda: index - 1 in self.stops)
            return self.stops[index - 1]


register_format(YfccSqlite())
