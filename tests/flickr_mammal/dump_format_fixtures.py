"""YFCC100M rows (dump_fixtures.row) written in the forms users have today: the AWS SQLite file,
the ``yfcc100m`` tool's folder of gzipped JSON lines, a Hugging Face ``metadata.jsonl``."""

from __future__ import annotations

import gzip
import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from flickr_mammal.dump.formats.sqlite import SQLITE_COLUMNS, TABLE

# Declared types as a dump of the TSV into SQLite gives them: SQLite keeps a value's own type
# where it cannot convert it ("" in a REAL column stays text, "12ab" in an INTEGER one too).
_TYPES = {"photoid": "INTEGER", "dateuploaded": "INTEGER", "longitude": "REAL",
          "latitude": "REAL", "accuracy": "INTEGER", "marker": "INTEGER"}


def write_sqlite(rows: list[dict[str, Any]], path: Path, *, table: str = TABLE,
                 columns: tuple[str, ...] = SQLITE_COLUMNS, typed: bool = True) -> Path:
    """The rows as the AWS file's table (typed columns, or all untyped: values as given)."""
    conn = sqlite3.connect(path)
    decl = ", ".join(f'"{c}" {_TYPES.get(c, "TEXT") if typed else ""}' for c in columns)
    conn.execute(f'CREATE TABLE "{table}" ({decl})')
    conn.executemany(f'INSERT INTO "{table}" VALUES ({", ".join("?" * len(columns))})',
                     [[r.get(c) for c in columns] for r in rows])
    conn.commit()
    conn.close()
    return path


def tool_sample(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the ``yfcc100m`` tool writes it: the 23 keys with photoid and the numbers typed
    where they are numbers, empty coordinates and accuracy as null, plus its ``key``."""
    def number(value: str, kind: type) -> Any:
        try:
            return kind(value)
        except ValueError:
            return value or None  # "12ab" stays text; "" is null

    sample: dict[str, Any] = {c: row[c] for c in SQLITE_COLUMNS}
    for column, kind in (("photoid", int), ("dateuploaded", int), ("marker", int),
                         ("longitude", float), ("latitude", float), ("accuracy", int)):
        sample[column] = number(row[column], kind)
    sample["key"] = hashlib.md5(row["downloadurl"].encode()).hexdigest()
    return sample


def _line(sample: dict[str, Any]) -> bytes:
    return (json.dumps(sample) + "\n").encode()


def write_jsonl(rows: list[dict[str, Any]], path: Path, *, extra: bool = False) -> Path:
    """One JSON-lines file (gzipped when its name ends in .gz); ``extra``: Hugging Face keys
    besides the YFCC100M ones (ignored by the scan)."""
    samples = [tool_sample(r) for r in rows]
    if extra:
        samples = [{**s, "title_clean": s["title"].replace("+", " "), "img": {"path": "x.jpg"}}
                   for s in samples]
    data = b"".join(_line(s) for s in samples)
    path.write_bytes(gzip.compress(data, compresslevel=1) if path.suffix == ".gz" else data)
    return path


def write_tool_folder(rows: list[dict[str, Any]], folder: Path, *, shards: int = 16,
                      batch: int = 7) -> Path:
    """The ``yfcc100m`` tool's layout: rows sharded by their key into ``<key[:3]>.gz`` files,
    each appended in batches (so each file is many gzip members), ``shards`` files at most."""
    folder.mkdir(parents=True, exist_ok=True)
    buckets: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        sample = tool_sample(row)
        name = f"{int(sample['key'][:3], 16) % shards:03x}"
        buckets.setdefault(name, []).append(sample)
    for name, samples in sorted(buckets.items()):
        for k in range(0, len(samples), batch):
            with gzip.open(folder / f"{name}.gz", "ab", compresslevel=1) as out:
                out.write(b"".join(_line(s) for s in samples[k:k + batch]))
    return folder
