"""Catalog.add_slice insert rate (records/s), against the per-record ambiguity check it replaced.

The search stage commits each upload-date slice (up to 4,000 records) in one transaction. The
ambiguity check (a photo returned for two classes is kept for neither) used to run one SELECT per
record; it now runs one grouped query per chunk of 500 ids. This inserts the same slices into two
fresh catalogs on disk, one with each check, prints records/s and the ratio, and checks that
both catalogs end with the same records, statuses and errors.

    python benchmarks/bench_catalog.py [--classes 4] [--slices 8] [--per-slice 4000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.search import SliceResult


class PerRecordCatalog(Catalog):
    """The previous check, kept here as the peer: one SELECT per record of the slice."""

    @staticmethod
    def _mark_ambiguous(conn: sqlite3.Connection, photo_ids: Iterable[str]) -> None:
        for photo_id in photo_ids:
            names = sorted(r[0] for r in conn.execute(
                "SELECT class_name FROM hits WHERE photo_id = ?", (photo_id,)))
            if len(names) > 1:
                conn.execute("UPDATE records SET status = ?, error = ? WHERE photo_id = ?",
                             (str(Status.AMBIGUOUS),
                              f"ambiguous: found for classes {', '.join(names)}", photo_id))


def make_slices(classes: int, slices: int, per_slice: int, overlap: float,
                seed: int = 0) -> list[SliceResult]:
    """Slices of ``classes`` classes; ``overlap`` of each class's photos also appear in
    another class's search (those become AMBIGUOUS)."""
    rng = np.random.default_rng(seed)
    per_class = slices * per_slice
    out = []
    for c in range(classes):
        ids = np.arange(c * per_class, (c + 1) * per_class)
        shared = rng.random(per_class) < overlap
        ids[shared] = rng.integers(0, classes * per_class, int(shared.sum()))
        name = CLASS_NAMES[c]
        for s in range(slices):
            chunk = ids[s * per_slice:(s + 1) * per_slice]
            records = tuple(PhotoRecord(str(i), "owner@N00", name, c, 48.1, 11.9,
                                        url=f"https://example.org/{i}.jpg") for i in chunk)
            out.append(SliceResult(name, s * 1000, s * 1000 + 999, len(records), records))
    return out


def timed_insert(cls: type[Catalog], path: Path, slices: list[SliceResult]) -> float:
    with cls.open(path) as catalog:
        start = time.perf_counter()
        for result in slices:
            catalog.add_slice(result)
        return time.perf_counter() - start


def state(path: Path) -> list[tuple]:
    with sqlite3.connect(path) as conn:
        return conn.execute(
            "SELECT photo_id, class_name, status, error FROM records ORDER BY photo_id").fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--slices", type=int, default=8, help="slices per class")
    parser.add_argument("--per-slice", type=int, default=4000)
    parser.add_argument("--overlap", type=float, default=0.05)
    args = parser.parse_args(argv)
    slices = make_slices(args.classes, args.slices, args.per_slice, args.overlap)
    total = sum(len(s.records) for s in slices)
    with tempfile.TemporaryDirectory() as tmp:
        new_path, old_path = Path(tmp) / "new.sqlite", Path(tmp) / "old.sqlite"
        old_s = timed_insert(PerRecordCatalog, old_path, slices)
        new_s = timed_insert(Catalog, new_path, slices)
        same = state(new_path) == state(old_path)
        with Catalog.open(new_path) as catalog:
            ambiguous = catalog.count(Status.AMBIGUOUS)
    print(f"{len(slices)} slices, {total} records ({ambiguous} ambiguous), SQLite "
          f"{sqlite3.sqlite_version}")
    print(f"{'check':<28}{'seconds':>9}{'records/s':>12}")
    print(f"{'per-record SELECT (before)':<28}{old_s:>9.2f}{total / old_s:>12.0f}")
    print(f"{'grouped IN query (after)':<28}{new_s:>9.2f}{total / new_s:>12.0f}")
    print(f"speed-up {old_s / new_s:.2f}x; identical catalogs: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
