"""The search stage from a local metadata dump (YFCC100M TSV / parquet), resumable.

Offline alternative to the Flickr API search (docs/reference.md §2), with the same class matching
(dump_match), filters and records (dump_rows). Two phases, both in the build's catalog:

1. Scan: every chunk's class matches are staged (table ``dump_matches``) in the same
   transaction that marks the chunk done (``dump_chunks``); a killed scan continues at the
   first chunk not done, and a finished source file is never read again (``dump_sources``).
2. Select (each run, once the scan is complete): per class, the ``per_class`` unambiguous
   matches with the smallest keyed hash, plus every photo named by two or more classes, go
   into the catalog as one search slice per class (``Catalog.add_slice``, whose ``hits``
   rule makes the latter AMBIGUOUS). Adding a record again changes nothing, so re-running
   the selection (after a crash, or with a larger ``--per-class``) only adds what is new.

The scan's options (files, format, columns, classes and their texts: search text, synonyms,
exclusions; licences, dates, chunking, seed: :func:`scan_identity`) are stored; a later run with
other options stops with an error instead of mixing two scans.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tqdm import tqdm

from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import MammalClass, get_class
from flickr_mammal.dump.errors import DumpScanMismatch
from flickr_mammal.dump.formats import Chunk, ChunkTask
from flickr_mammal.dump.match import ClassMatcher
from flickr_mammal.dump.read import TEXT_FIELDS, MetadataConfig, resolve_columns
from flickr_mammal.dump.rows import DROP_REASONS, RowFilters, stage_rows, staged_record
from flickr_mammal.records import PhotoRecord
from flickr_mammal.search import SliceResult

log = logging.getLogger(__name__)
T = TypeVar("T")

_TABLES = (
    "CREATE TABLE IF NOT EXISTS dump_chunks (source TEXT NOT NULL, chunk INTEGER NOT NULL, "
    "start INTEGER NOT NULL, stop INTEGER NOT NULL, counts TEXT NOT NULL, "
    "PRIMARY KEY (source, chunk))",
    "CREATE TABLE IF NOT EXISTS dump_sources (source TEXT PRIMARY KEY, chunks INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS dump_matches (photo_id TEXT NOT NULL, class_name TEXT NOT NULL, "
    "rank INTEGER NOT NULL, photo TEXT NOT NULL, PRIMARY KEY (photo_id, class_name)) "
    "WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS dump_matches_rank ON dump_matches(class_name, rank, photo_id)",
)
_AMBIGUOUS = "SELECT photo_id FROM dump_matches GROUP BY photo_id HAVING count(*) > 1"
_AMBIGUOUS_IDS = "temp.dump_ambiguous"  # filled once per selection (a connection's own)


def search_dump(config: MetadataConfig, catalog: Catalog, *,
                classes: Sequence[str | MammalClass],
                licenses: Iterable[int], window: tuple[int, int], per_class: int,
                progress: bool = False, image_hosts: tuple[str, ...] = (),
                any_host: bool = False) -> dict[str, Any]:
    """Scan the dump (resuming), then select the candidates into the catalog; returns the
    scan summary also stored as catalog meta ``metadata`` (it goes into stats.json).
    ``image_hosts``/``any_host``: the download stage's host rule (FetchConfig), applied as
    records enter the catalog (a URL off it is recorded ``url_refused``)."""
    with catalog.transaction() as conn:
        for statement in _TABLES:
            conn.execute(statement)
    chosen = [c if isinstance(c, MammalClass) else get_class(c) for c in classes]
    matcher = ClassMatcher(chosen, url_encoded=config.reader.url_encoded)
    filters = RowFilters(frozenset(int(x) for x in licenses), int(window[0]), int(window[1]))
    files = config.files()
    root = Path(config.path)
    sources = [(p.relative_to(root).as_posix() if root.is_dir() else p.name, p) for p in files]
    layouts = {source: _columns(config, path) for source, path in sources}  # fail before work
    _check_identity(catalog, config, sources, chosen, filters)
    bar = tqdm(desc="scan metadata", unit="row", unit_scale=True, disable=not progress or None)
    try:
        for source, path in sources:
            _scan_source(config, catalog, source, path, layouts[source], matcher, filters, bar)
    finally:
        bar.close()
    return _select(catalog, chosen, per_class, window, partial(
        staged_record, image_hosts=tuple(image_hosts), any_host=any_host))


def scan_identity(config: MetadataConfig, sources: Sequence[tuple[str, Path]],
                  classes: Sequence[MammalClass], filters: RowFilters) -> dict[str, Any]:
    """What makes two scans the same scan (as stored JSON): the files, how they are read, and
    every option that decides which rows match; the class texts (search text, synonyms,
    exclusions) included, so two class files that differ only there never share a scan."""
    return json.loads(json.dumps({
        "format": config.format, "files": [[s, p.stat().st_size] for s, p in sources],
        "columns": config.mapping, "classes": [c.name for c in classes],
        "class_texts": {c.name: {"texts": list(c.texts), "exclude": list(c.exclude)}
                        for c in classes},
        "licenses": sorted(filters.licenses),
        "window": [filters.min_upload_date, filters.max_upload_date],
        "chunk_bytes": config.chunk_bytes, "seed": config.seed,
    }))


def _check_identity(catalog: Catalog, config: MetadataConfig, sources: list[tuple[str, Path]],
                    classes: Sequence[MammalClass], filters: RowFilters) -> None:
    identity = scan_identity(config, sources, classes, filters)
    stored = catalog.get_meta("metadata_scan")
    started = catalog.connection.execute("SELECT 1 FROM dump_chunks LIMIT 1").fetchone()
    if started and stored is not None and stored != identity:
        differ = sorted(k.replace("_", " ") for k in identity if stored.get(k) != identity[k])
        raise DumpScanMismatch(
            f"{catalog.path.parent} holds a metadata scan made with other {', '.join(differ)}; "
            "re-run with the same options, or build into a new --out folder")
    catalog.set_meta("metadata_scan", identity)


def _columns(config: MetadataConfig, path: Path) -> tuple[tuple[str, ...], dict[str, str]]:
    """(positional layout or (), field -> column) of one file; raises DumpColumnError."""
    layout, available = config.reader.layout(path)
    return layout, resolve_columns(config.mapping, available, str(path))


def _scan_source(config: MetadataConfig, catalog: Catalog, source: str, path: Path,
                 columns: tuple[tuple[str, ...], dict[str, str]], matcher: ClassMatcher,
                 filters: RowFilters, bar: tqdm) -> None:
    conn = catalog.connection
    if conn.execute("SELECT 1 FROM dump_sources WHERE source = ?", (source,)).fetchone():
        return
    done = conn.execute("SELECT chunk, stop FROM dump_chunks WHERE source = ? ORDER BY chunk",
                        (source,)).fetchall()
    layout, fields = columns
    readers = default_readers() if config.readers is None else config.readers
    readers = min(readers, config.reader.max_readers or readers)
    tasks = config.reader.tasks(path, layout, fields, TEXT_FIELDS, config.chunk_bytes, done,
                                raw_filter=matcher.raw_filter())
    # The vectorised prefilter runs with the reading, so the reader threads (below) do all
    # the per-byte work and this thread only the few hit rows and the commits.
    work = partial(_read_chunk, prefilter=matcher.prefilter_hits)
    # Reading, parsing, prefiltering (pyarrow, SQLite, libbz2: the GIL is released) in
    # ``readers`` threads, several chunks at once, overlapping the per-hit work and commits.
    chunks = _in_order(tasks, work, readers) if readers else map(work, tasks)
    count = len(done)
    for chunk in chunks:
        if chunk is None:  # a task made past the source's end
            continue
        index, start, stop = chunk.index, chunk.start, chunk.stop
        staged, counts = stage_rows(chunk.texts, chunk.rows_at, chunk.num_rows, matcher,
                                    filters, config.seed, hits=chunk.hits)
        counts["malformed"] += chunk.malformed
        with catalog.transaction() as tx:  # the chunk's matches and its "done" mark together
            tx.executemany("INSERT OR IGNORE INTO dump_matches VALUES (?, ?, ?, ?)", staged)
            tx.execute("INSERT INTO dump_chunks VALUES (?, ?, ?, ?, ?)",
                       (source, index, start, stop, json.dumps(dict(sorted(counts.items())))))
        count += 1
        bar.update(counts["rows"])
    with catalog.transaction() as tx:
        tx.execute("INSERT OR REPLACE INTO dump_sources VALUES (?, ?)", (source, count))
    log.info("metadata %s: scanned (%d chunks)", source, count)


# Reader threads by default: one per CPU, at most this many (each holds a chunk, up to
# ``chunk_bytes`` and its parse, in memory; past a few, the commits in this thread are the limit).
MAX_DEFAULT_READERS = 4


def default_readers() -> int:
    """One reader thread per CPU up to :data:`MAX_DEFAULT_READERS`; none on one CPU."""
    cpus = os.cpu_count() or 1
    return min(cpus, MAX_DEFAULT_READERS) if cpus > 1 else 0


def _read_chunk(task: ChunkTask, prefilter: Callable[[list[Any]], Any]) -> Chunk | None:
    chunk = task()
    return None if chunk is None else replace(chunk, hits=prefilter(list(chunk.texts.values())))


def _in_order(tasks: Iterator[ChunkTask], work: Callable[[ChunkTask], Chunk | None],
              readers: int) -> Iterator[Chunk | None]:
    """``work(task)`` of each task, run in ``readers`` threads, yielded in the tasks' order.
    Tasks are made in a thread of their own (making one may decompress a stream) and at most
    ``readers + 1`` chunks are read ahead of the one being committed (bounded memory)."""
    pool = ThreadPoolExecutor(readers, thread_name_prefix="dump-reader")
    futures = _prefetched((pool.submit(work, task) for task in tasks), ahead=readers)
    try:
        for future in futures:
            yield future.result()
    finally:
        futures.close()
        pool.shutdown(wait=True, cancel_futures=True)


def _prefetched(items: Iterator[T], ahead: int = 1) -> Iterator[T]:
    """``items``, produced up to ``ahead`` ahead in a thread."""
    slot: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=ahead)
    stop = threading.Event()

    def offer(kind: str, value: Any) -> bool:
        while not stop.is_set():  # never blocked for good: the consumer may have left
            try:
                slot.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as exc:  # handed to the consumer, raised there
            offer("error", exc)

    thread = threading.Thread(target=produce, name="dump-tasks", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = slot.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join()


def _select(catalog: Catalog, classes: Sequence[MammalClass], per_class: int,
            window: tuple[int, int],
            to_record: Callable[[str, MammalClass], PhotoRecord]) -> dict[str, Any]:
    conn = catalog.connection
    totals: Counter[str] = Counter()
    for (counts,) in conn.execute("SELECT counts FROM dump_chunks"):
        totals.update(json.loads(counts))
    # The ambiguous ids once (not one GROUP BY over all matches per class).
    conn.execute(f"DROP TABLE IF EXISTS {_AMBIGUOUS_IDS}")
    conn.execute(f"CREATE TABLE {_AMBIGUOUS_IDS} (photo_id TEXT PRIMARY KEY)")
    conn.execute(f"INSERT INTO {_AMBIGUOUS_IDS} {_AMBIGUOUS}")
    num_ambiguous = conn.execute(f"SELECT count(*) FROM {_AMBIGUOUS_IDS}").fetchone()[0]
    per_class_counts: dict[str, dict[str, int]] = {}
    for mammal_class in classes:
        name = mammal_class.name
        candidates = conn.execute("SELECT count(*) FROM dump_matches WHERE class_name = ?",
                                  (name,)).fetchone()[0]
        chosen = [r for (r,) in conn.execute(
            f"SELECT photo FROM dump_matches WHERE class_name = ? AND photo_id NOT IN "
            f"(SELECT photo_id FROM {_AMBIGUOUS_IDS}) ORDER BY rank, photo_id LIMIT ?",
            (name, per_class))]
        doubled = [r for (r,) in conn.execute(
            f"SELECT photo FROM dump_matches WHERE class_name = ? AND photo_id IN "
            f"(SELECT photo_id FROM {_AMBIGUOUS_IDS}) ORDER BY photo_id", (name,))]
        records = tuple(to_record(r, mammal_class) for r in chosen + doubled)
        catalog.add_slice(SliceResult(name, window[0], window[1], candidates, records))
        per_class_counts[name] = {"candidates": candidates, "selected": len(chosen),
                                  "ambiguous": len(doubled)}
    summary = {
        "rows": totals["rows"], "matched": totals["matched"],
        "candidates": totals["candidates"], "ambiguous_photos": num_ambiguous,
        "malformed_rows": totals["malformed"],
        "dropped": {r: totals[f"dropped_{r}"] for r in DROP_REASONS},
        "per_class": per_class_counts,
    }
    conn.execute(f"DROP TABLE {_AMBIGUOUS_IDS}")
    catalog.set_meta("metadata", summary)
    log.info("metadata: %d rows, %d name a class, %d candidates, %d ambiguous", summary["rows"],
             summary["matched"], summary["candidates"], num_ambiguous)
    return summary
