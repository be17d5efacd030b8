"""The build's catalog: every photo record and every stage's state in one SQLite file.

docs/reference.md §1-2. A build must survive a crash (``kill -9``) or Ctrl-C at any point and resume
without losing or duplicating a record, so every stage commits its results here in batches and
only ever reads the records still in its input status.

Durability choice: WAL journal with ``synchronous=NORMAL``. In WAL mode a committed transaction
survives an application crash (``kill -9``, an exception, Ctrl-C) whatever the synchronous level;
NORMAL only skips the fsync at each commit, so a *power loss or OS crash* may roll back the last
few commits, never corrupt the file. Every stage is idempotent (a rolled-back batch is simply
redone: its records are still in their input status), so the cheaper NORMAL is safe here and
keeps thousands of small batch commits fast.

Tables: ``records`` (one row per photo id, columns = :data:`RECORD_FIELDS` plus ``extra`` as
JSON), ``hits`` (which classes' searches returned a photo: two or more = ambiguous), ``slices``
(search slices: done, cut short, or failed with an ``error``) and ``meta`` (schema version
and the build config, never the API key).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pandas as pd

from flickr_mammal._util import batched
from flickr_mammal.manifest import normalize_manifest
from flickr_mammal.records import (
    BAD_ID,
    PUBLIC_FIELDS,
    RECORD_FIELDS,
    WITH_IMAGE,
    PhotoRecord,
    Status,
)
from skewtools.io import atomic_write_with

SCHEMA_VERSION = 1

_SQL_TYPES = {"str": "TEXT", "int": "INTEGER", "float": "REAL", "Status": "TEXT"}
_FIELD_TYPES: dict[str, str] = {
    f.name: str(f.type) for f in dataclasses.fields(PhotoRecord) if f.name in RECORD_FIELDS
}
_COLUMNS: tuple[str, ...] = (*RECORD_FIELDS, "extra")
_STATUS_AT = RECORD_FIELDS.index("status")
_FLOAT_FIELDS = tuple(name for name, kind in _FIELD_TYPES.items() if kind == "float")
# Numeric order for Flickr's digit-string ids ("later photo ids"), deterministic for any string.
_ID_ORDER = "length(photo_id), photo_id"
# Ids per ``IN (...)`` list: under SQLite's bound-variable limit (999 before SQLite 3.32).
_IN_CHUNK = 500


class SliceLike(Protocol):
    """What :meth:`Catalog.add_slice` needs from a search slice (search.SliceResult)."""

    class_name: str
    min_date: int
    max_date: int
    total: int
    records: tuple[PhotoRecord, ...]
    complete: bool


class SliceRow(NamedTuple):
    """A stored search slice; ``complete`` is False when it was cut short at per_class or
    failed; ``error`` says why a slice is not fully enumerated (search.OVER_CAP, ...)."""

    min_date: int
    max_date: int
    total: int
    num_records: int
    complete: bool
    error: str = ""


def failure_reason(error: str) -> str:
    """The reason part of an error text: errors are written ``"reason: detail"``."""
    return error.split(":", 1)[0].strip()


def _schema() -> str:
    cols = ",\n  ".join(
        f"{name} {_SQL_TYPES.get(_FIELD_TYPES[name], 'TEXT')}"
        # REAL columns stay nullable: SQLite stores NaN as NULL (read back as NaN).
        + (" PRIMARY KEY" if name == "photo_id" else
           "" if _FIELD_TYPES[name] == "float" else " NOT NULL")
        for name in RECORD_FIELDS
    )
    return f"""
CREATE TABLE IF NOT EXISTS records (
  {cols},
  extra TEXT NOT NULL DEFAULT '{{}}'
);
-- (status, photo_id) serves every stage's paged read of its input status.
CREATE INDEX IF NOT EXISTS records_status ON records(status, photo_id);
CREATE TABLE IF NOT EXISTS hits (
  photo_id TEXT NOT NULL, class_name TEXT NOT NULL, PRIMARY KEY (photo_id, class_name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slices (
  class_name TEXT NOT NULL, min_date INTEGER NOT NULL, max_date INTEGER NOT NULL,
  total INTEGER NOT NULL, num_records INTEGER NOT NULL, complete INTEGER NOT NULL,
  error TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (class_name, min_date, max_date)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    """Catalogs written before slices had an ``error`` column, or records an ``attempts``
    column, gain them (same schema version: old code never reads them; '' and 0 are right for
    every row it wrote: a failed photo of an old catalog has its retries ahead of it)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(slices)")}
    if "error" not in columns:
        conn.execute("ALTER TABLE slices ADD COLUMN error TEXT NOT NULL DEFAULT ''")
    columns = {row[1] for row in conn.execute("PRAGMA table_info(records)")}
    if "attempts" not in columns:
        conn.execute("ALTER TABLE records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0")


def _to_row(record: PhotoRecord) -> tuple[Any, ...]:
    # The fields as they are (no dict, no copy of ``extra``: it is only serialised); the
    # status as its text. SQLite stores NaN as NULL; the reader maps NULL back to NaN.
    row = [getattr(record, name) for name in RECORD_FIELDS]
    row[_STATUS_AT] = str(record.status)
    return (*row, json.dumps(record.extra, sort_keys=True))


def _from_row(row: sqlite3.Row) -> PhotoRecord:
    d = dict(zip(_COLUMNS, row, strict=True))
    for name in _FLOAT_FIELDS:
        if d[name] is None:
            d[name] = math.nan
    d["extra"] = json.loads(d["extra"])
    return PhotoRecord.from_dict(d)


class Catalog:
    """A build's SQLite catalog. Open with :meth:`open`; use as a context manager to close."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self._conn = conn
        self.path = path

    # ---- lifecycle -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path) -> Catalog:
        """Open (creating if needed) the catalog at ``path``; refuses another schema version."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
        conn = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_schema())
        _add_missing_columns(conn)
        catalog = cls(conn, path)
        version = catalog.get_meta("schema_version")
        if version is None:
            catalog.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            conn.close()
            raise RuntimeError(
                f"{path} has catalog schema version {version}, this code reads version "
                f"{SCHEMA_VERSION}; rebuild into a new --out folder"
            )
        return catalog

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # For stages that keep tables of their own here (dump_search.py): no other use.
    @property
    def connection(self) -> sqlite3.Connection:
        return self._conn

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._transaction()

    # ---- meta ------------------------------------------------------------------------------
    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (callers must strip secrets such as the API key)."""
        self._conn.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    # ---- search ----------------------------------------------------------------------------
    def add_slice(self, result: SliceLike) -> int:
        """Store one finished search slice and its records in one transaction.

        A photo already known is not inserted again; a photo returned for two or more classes
        becomes AMBIGUOUS (kept for neither), its error naming every class. Returns the number
        of new records.
        """
        with self._transaction() as conn:
            before = conn.total_changes
            # ON CONFLICT DO NOTHING skips known ids only; OR IGNORE would also drop bad rows.
            conn.executemany(
                f"INSERT INTO records({', '.join(_COLUMNS)}) "
                f"VALUES({', '.join('?' * len(_COLUMNS))}) ON CONFLICT(photo_id) DO NOTHING",
                [_to_row(r) for r in result.records],
            )
            added = conn.total_changes - before
            conn.executemany(
                "INSERT OR IGNORE INTO hits(photo_id, class_name) VALUES(?, ?)",
                [(r.photo_id, r.class_name) for r in result.records],
            )
            self._mark_ambiguous(conn, (r.photo_id for r in result.records))
            conn.execute(
                "INSERT OR REPLACE INTO slices(class_name, min_date, max_date, total, "
                "num_records, complete, error) VALUES(?, ?, ?, ?, ?, ?, ?)",
                (result.class_name, result.min_date, result.max_date, result.total,
                 len(result.records), int(result.complete), getattr(result, "error", "")),
            )
        return added

    @staticmethod
    def _mark_ambiguous(conn: sqlite3.Connection, photo_ids: Iterable[str]) -> None:
        """Those of ``photo_ids`` found for two or more classes become AMBIGUOUS.

        One grouped query per chunk of ids (not one per record): a slice holds up to 4,000.
        """
        names: dict[str, list[str]] = {}
        for chunk in batched(dict.fromkeys(photo_ids), _IN_CHUNK):
            rows = conn.execute(
                "SELECT photo_id, class_name FROM hits WHERE photo_id IN ("
                "SELECT photo_id FROM hits "
                f"WHERE photo_id IN ({', '.join('?' * len(chunk))}) "
                "GROUP BY photo_id HAVING count(*) > 1)",
                chunk,
            )
            for photo_id, class_name in rows:
                names.setdefault(photo_id, []).append(class_name)
        conn.executemany(
            "UPDATE records SET status = ?, error = ? WHERE photo_id = ?",
            [(str(Status.AMBIGUOUS), f"ambiguous: found for classes {', '.join(sorted(found))}",
              photo_id) for photo_id, found in names.items()],
        )

    def done_slices(self) -> set[tuple[str, int, int]]:
        """``(class_name, min_date, max_date)`` of every complete search slice."""
        rows = self._conn.execute(
            "SELECT class_name, min_date, max_date FROM slices WHERE complete = 1")
        return {(c, int(a), int(b)) for c, a, b in rows}

    def slice_count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM slices").fetchone()[0])

    def slices_of(self, class_name: str) -> list[SliceRow]:
        """A class's stored slices, oldest first."""
        return [SliceRow(int(a), int(b), int(t), int(n), bool(c), e) for a, b, t, n, c, e in
                self._conn.execute(
                    "SELECT min_date, max_date, total, num_records, complete, error FROM slices "
                    "WHERE class_name = ? ORDER BY min_date", (class_name,))]

    def drop_failed_slices(self, class_name: str) -> int:
        """Forget a class's failed slices (not done, with an error) before its search runs
        again: it retries them, maybe split differently, and stores what it finds."""
        with self._transaction() as conn:
            return conn.execute(
                "DELETE FROM slices WHERE class_name = ? AND complete = 0 AND error != ''",
                (class_name,)).rowcount

    def slice_errors(self) -> dict[str, dict[str, int]]:
        """``{class_name: {error: number of slices}}`` of slices not fully enumerated."""
        out: dict[str, dict[str, int]] = {}
        for name, error, n in self._conn.execute(
            "SELECT class_name, error, count(*) FROM slices WHERE error != '' "
            "GROUP BY class_name, error ORDER BY class_name, error"
        ):
            out.setdefault(name, {})[error] = int(n)
        return out

    # ---- reading ---------------------------------------------------------------------------
    def records(
        self, status: Status | Iterable[Status] | None = None, *, ungeocoded: bool = False,
        page_size: int = 1000,
    ) -> Iterator[PhotoRecord]:
        """Stream records (optionally of some statuses) in photo-id text order.

        Pages by key (``photo_id > last``), so callers may :meth:`update` records between
        pages, even moving them out of ``status``, without rows being skipped or repeated.
        ``ungeocoded`` keeps only records the geocode stage has not seen yet.
        """
        where, params = self._where(status, ungeocoded)
        last = ""
        while True:
            rows = self._conn.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM records WHERE {where} "
                "AND photo_id > ? ORDER BY photo_id LIMIT ?",
                (*params, last, page_size),
            ).fetchall()
            if not rows:
                return
            yield from (_from_row(row) for row in rows)
            last = rows[-1][0]

    def count(self, status: Status | Iterable[Status] | None = None, *,
              ungeocoded: bool = False) -> int:
        where, params = self._where(status, ungeocoded)
        return int(self._conn.execute(f"SELECT count(*) FROM records WHERE {where}",
                                      params).fetchone()[0])

    @staticmethod
    def _where(status: Status | Iterable[Status] | None,
               ungeocoded: bool) -> tuple[str, tuple[Any, ...]]:
        clauses, params = ["1"], []
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            params += [str(s) for s in statuses]
        if ungeocoded:
            clauses.append("geo_status = ''")
        return " AND ".join(clauses), tuple(params)

    def get(self, photo_id: str) -> PhotoRecord | None:
        row = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM records WHERE photo_id = ?", (photo_id,)
        ).fetchone()
        return None if row is None else _from_row(row)

    def group_counts(self, *columns: str,
                     status: Status | None = None) -> dict[tuple[Any, ...], int]:
        """Record counts grouped by some record columns (optionally within one status)."""
        unknown = [c for c in columns if c not in RECORD_FIELDS]
        if unknown or not columns:
            raise ValueError(f"group by record fields ({', '.join(RECORD_FIELDS)}), "
                             f"got {list(columns)}")
        where, params = self._where(status, False)
        cols = ", ".join(columns)
        rows = self._conn.execute(
            f"SELECT {cols}, count(*) FROM records WHERE {where} GROUP BY {cols} ORDER BY {cols}",
            params)
        return {tuple(r[:-1]): int(r[-1]) for r in rows}

    def counts(self) -> dict[str, dict[str, int]]:
        """``{status: {failure reason ("" when none): n}}`` over all records."""
        out: dict[str, dict[str, int]] = {}
        for status, error, n in self._conn.execute(
            "SELECT status, error, count(*) FROM records GROUP BY status, error"
        ):
            reasons = out.setdefault(status, {})
            reason = failure_reason(error)
            reasons[reason] = reasons.get(reason, 0) + n
        return {s: dict(sorted(r.items())) for s, r in sorted(out.items())}

    # ---- writing ---------------------------------------------------------------------------
    def update(self, records: Iterable[PhotoRecord]) -> int:
        """Upsert stage results (whole records) in one transaction; returns how many."""
        rows = [_to_row(r) for r in records]
        if not rows:
            return 0
        assignments = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS if c != "photo_id")
        with self._transaction() as conn:
            conn.executemany(
                f"INSERT INTO records({', '.join(_COLUMNS)}) "
                f"VALUES({', '.join('?' * len(_COLUMNS))}) "
                f"ON CONFLICT(photo_id) DO UPDATE SET {assignments}",
                rows,
            )
        return len(rows)

    def retry_failed_downloads(self, reasons: Iterable[str], patterns: Iterable[str],
                               max_attempts: int) -> int:
        """DOWNLOAD_FAILED records whose error is one of ``reasons`` (or matches a GLOB of
        ``patterns``) and that have had fewer than ``max_attempts`` download attempts go back
        to SEARCHED, so this build's download stage fetches them again. Returns how many."""
        reasons, patterns = list(reasons), list(patterns)
        match = " OR ".join([f"error IN ({', '.join('?' * len(reasons))})"] * bool(reasons)
                            + ["error GLOB ?"] * len(patterns)) or "0"
        with self._transaction() as conn:
            return conn.execute(
                f"UPDATE records SET status = ?, error = '' WHERE status = ? "
                f"AND attempts < ? AND ({match})",
                (str(Status.SEARCHED), str(Status.DOWNLOAD_FAILED), max_attempts, *reasons,
                 *patterns),
            ).rowcount

    def mark_bad_ids(self) -> int:
        """Records whose photo id is not 1-20 ASCII digits (records.is_valid_photo_id) and that
        a stage could still pick up become DOWNLOAD_FAILED ``bad_id``; returns how many.

        Search refuses such ids now; this catches those a build from before that stored, so
        that no stage ever turns them into a path. SQL, so a 700K-record catalog costs one
        scan: length() and GLOB stop at a NUL in TEXT, hence the BLOB casts.
        """
        with self._transaction() as conn:
            return conn.execute(
                "UPDATE records SET status = ?, error = ?, sha256 = '', width = 0, height = 0 "
                "WHERE status NOT IN (?, ?) AND (photo_id = '' OR photo_id GLOB '*[^0-9]*' "
                "OR length(CAST(photo_id AS BLOB)) > 20 "
                "OR instr(CAST(photo_id AS BLOB), X'00') > 0)",
                (str(Status.DOWNLOAD_FAILED), BAD_ID, str(Status.DOWNLOAD_FAILED),
                 str(Status.AMBIGUOUS)),
            ).rowcount

    def mark_duplicates(self) -> int:
        """Records whose image bytes (sha256) equal an earlier photo id's become DUPLICATE.

        The earliest photo id of each group keeps its status, whatever order records were
        downloaded in, so a resumed build marks the same records as an uninterrupted one.
        Returns the number of records newly marked.
        """
        statuses = tuple(str(s) for s in WITH_IMAGE)  # only images can be duplicates
        marks = ", ".join("?" * len(statuses))
        # One statement (window function + UPDATE ... FROM, SQLite >= 3.33): linear in records.
        with self._transaction() as conn:
            before = conn.total_changes
            conn.execute(
                f"""WITH ranked AS (
                      SELECT photo_id, first_value(photo_id) OVER (
                          PARTITION BY sha256 ORDER BY {_ID_ORDER}) AS first_id
                      FROM records WHERE sha256 != '' AND status IN ({marks}))
                    UPDATE records SET status = ?,
                           error = 'duplicate: same image as photo ' || ranked.first_id
                    FROM ranked
                    WHERE records.photo_id = ranked.photo_id
                      AND ranked.photo_id != ranked.first_id AND records.status != ?""",
                (*statuses, str(Status.DUPLICATE), str(Status.DUPLICATE)),
            )
            return conn.total_changes - before  # rowcount is -1 for a WITH ... UPDATE

    # ---- export ----------------------------------------------------------------------------
    def kept_frame(self, coord_decimals: int = 2) -> pd.DataFrame:
        """Kept images as a DataFrame of :data:`PUBLIC_FIELDS`, coordinates rounded."""
        rows = self._conn.execute(
            f"SELECT {', '.join(PUBLIC_FIELDS)} FROM records WHERE status = ? "
            f"ORDER BY {_ID_ORDER}", (str(Status.KEPT),),
        ).fetchall()
        frame = pd.DataFrame(rows, columns=list(PUBLIC_FIELDS))
        dtypes = {"str": "object", "int": "int64", "float": "float64"}
        for name in PUBLIC_FIELDS:
            frame[name] = frame[name].astype(dtypes.get(_FIELD_TYPES[name], "object"))
        for name in ("latitude", "longitude"):
            frame[name] = frame[name].round(coord_decimals)
        return frame

    def export_manifest(self, path: str | Path, coord_decimals: int = 2) -> pd.DataFrame:
        """Write ``manifest.parquet``: one row per kept image (public fields, rounded coords,
        ``key`` and ``geo_status``) in the typed schema of :mod:`flickr_mammal.manifest`."""
        frame = self.kept_frame(coord_decimals)
        status = dict(self._conn.execute("SELECT photo_id, geo_status FROM records WHERE "
                                         "status = ?", (str(Status.KEPT),)).fetchall())
        frame = normalize_manifest(frame.assign(geo_status=frame["photo_id"].map(status)))
        # atomic: a crash never leaves a half-written manifest
        atomic_write_with(path, lambda tmp: frame.to_parquet(tmp, index=False))
        return frame
