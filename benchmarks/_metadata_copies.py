"""The synthetic YFCC100M TSV of bench_metadata.py in the other forms users have: the AWS SQLite
file, one JSON-lines file, and the ``yfcc100m`` tool's folder of gzipped JSON lines (each file
many gzip members of 100 lines, compression level 1, as the tool appends them)."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import time
from pathlib import Path

from flickr_mammal.dump.formats.sqlite import SQLITE_COLUMNS, TABLE
from flickr_mammal.dump.read import YFCC_COLUMNS, parse_tsv, tsv_chunks

_TYPES = {"photoid": "INTEGER", "dateuploaded": "INTEGER", "longitude": "REAL",
          "latitude": "REAL", "accuracy": "INTEGER", "marker": "INTEGER"}
_NUMBERS = {"photoid": int, "dateuploaded": int, "marker": int, "longitude": float,
            "latitude": float, "accuracy": int}


def _batches(tsv: Path):
    """Lists of rows (column -> text) of the TSV, a 64 MB chunk at a time."""
    for _, data in tsv_chunks(tsv, 64 << 20):
        table, _ = parse_tsv(data, YFCC_COLUMNS, list(SQLITE_COLUMNS))
        yield table.to_pylist()


def to_sqlite(tsv: Path, path: Path) -> None:
    """Typed columns: SQLite's affinity turns digit text into numbers, "" stays text."""
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    decl = ", ".join(f"{c} {_TYPES.get(c, 'TEXT')}" for c in SQLITE_COLUMNS)
    conn.execute(f"CREATE TABLE {TABLE} ({decl})")
    insert = f"INSERT INTO {TABLE} VALUES ({', '.join('?' * len(SQLITE_COLUMNS))})"
    for rows in _batches(tsv):
        conn.executemany(insert, ([r[c] for c in SQLITE_COLUMNS] for r in rows))
    conn.commit()
    conn.close()
    tmp.rename(path)


def _sample(row: dict[str, str]) -> str:
    """One line as the yfcc100m tool writes it (numbers typed, empty ones null)."""
    out: dict[str, object] = dict(row)
    for column, kind in _NUMBERS.items():
        out[column] = kind(row[column]) if row[column] else None
    return json.dumps(out)


def to_jsonl(tsv: Path, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for rows in _batches(tsv):
            out.write("".join(_sample(r) + "\n" for r in rows))
    tmp.rename(path)


def to_gz_folder(jsonl: Path, folder: Path, files: int = 64, member_lines: int = 100) -> None:
    """Consecutive lines of ``jsonl`` into ``files`` gzip files of many members each."""
    lines = jsonl.read_bytes().splitlines(keepends=True)
    per_file = -(-len(lines) // files)
    tmp = folder.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        part = lines[k * per_file:(k + 1) * per_file]
        with open(tmp / f"{k:03x}.gz", "wb") as out:
            for m in range(0, len(part), member_lines):
                out.write(gzip.compress(b"".join(part[m:m + member_lines]), compresslevel=1))
    tmp.rename(folder)


def gzip_dc_seconds(folder: Path) -> float:
    """Wall seconds of ``gzip -dc`` of the folder's files to /dev/null (one process)."""
    return tool_dc_seconds("gzip", folder)


def tool_dc_seconds(tool: str, path: Path) -> float:
    """Wall seconds of ``TOOL -dc`` (gzip, bzip2: one process, one core) of a file, or of a
    folder's .gz files, to /dev/null."""
    files = sorted(map(str, path.glob("*.gz"))) if path.is_dir() else [str(path)]
    start = time.perf_counter()
    subprocess.run([tool, "-dc", *files], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start
