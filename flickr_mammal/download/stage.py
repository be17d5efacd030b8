"""Download stage: fetch every searched photo, shrink it, write it, record the outcome.

docs/reference.md section 1 (images stored at 300 px). Modelled on img2dataset's downloader: each
photo's failure is data (``status=DOWNLOAD_FAILED``, ``error`` a short reason such as
``http_404``, ``timeout``, ``too_large``, ``not_an_image``, ``truncated``, ``unavailable`` for
Flickr's redirect to its "photo unavailable" placeholder, ``redirect_refused``, ``bad_id`` for a
photo id that is not plain digits, which never becomes a path), never an exception. The HTTP
side (retries, per-host limits, size cap, deadline, redirect policy) lives in
:mod:`flickr_mammal.fetch`. Only problems of the machine itself (a failed disk write) propagate.

Threads wait on the network; few decode. Each of ``workers`` threads keeps its own
``requests.Session`` (connection pooling, keep-alive); a per-host semaphore caps how many
requests hit one server at once, held only while fetching. Decoding, resizing and encoding
release the GIL, but the Python glue around them does not, so at most ``decode_slots`` threads
per process decode at once (one by default: more only add GIL hand-offs between cores).
``processes=N`` runs N such processes (``spawn``), one per core or two, as img2dataset does
(:mod:`flickr_mammal.download_procs`).

Output order is completion order, not input order. Input records are read lazily and at most
``max_in_flight`` (per process) are queued at any time, so memory stays bounded for 700K
records.
"""

from __future__ import annotations

import hashlib
import io
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from flickr_mammal.fetch import FetchConfig, Fetcher, FetchError
from flickr_mammal.imaging import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    process_image,
)
from flickr_mammal.layout import Layout
from flickr_mammal.ratelimit import rate_text
from flickr_mammal.records import BAD_ID, PhotoRecord, Status
from skewtools.io import atomic_write_bytes

logger = logging.getLogger(__name__)

class DownloadWorkerLost(RuntimeError):
    """A download worker process died before reporting its photos (resuming fetches them)."""


@dataclass(frozen=True)
class DownloadConfig(FetchConfig):
    """How to fetch (the :class:`~flickr_mammal.fetch.FetchConfig` fields: timeouts, retries,
    size cap, redirect allow-list) and how to shrink photos. Times are seconds."""

    workers: int = 32                 # threads (per process): fetch + decode + write
    processes: int = 1                # >1: that many worker processes ("spawn"), for more cores
    decode_slots: int = 1             # images decoded at once per process (module docstring)
    max_side: int = 300
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_in_flight: int = 0            # records queued in the pool; 0 = 4 x workers
    progress: bool = False            # tqdm bar over finished records
    # Builds that may try one photo: a transient failure (TRANSIENT_REASONS) is fetched again
    # by the next build until the photo has had this many attempts; permanent ones never are.
    max_attempts: int = 3
    adopt: bool = True                # a SEARCHED photo's image already on disk is checked and
    #                                   kept instead of fetched (written by a killed run)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("workers", "processes", "decode_slots", "max_side", "max_pixels",
                     "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"DownloadConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_in_flight < 0:
            raise ValueError(f"DownloadConfig.max_in_flight must be >= 0, got "
                             f"{self.max_in_flight}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"DownloadConfig.quality must be in 1..95, got {self.quality}")

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or 4 * self.workers


# Failures worth fetching again in a later build: the server was overloaded or the network
# failed. Anything else (http_404/410/403, not_an_image, too_many_pixels, bad_id,
# redirect_refused, unavailable, truncated, ...) is a property of the photo: never retried.
TRANSIENT_REASONS: tuple[str, ...] = ("http_408", "http_429", "timeout", "connection_error")
TRANSIENT_PATTERNS: tuple[str, ...] = ("http_5[0-9][0-9]",)  # SQLite GLOB: every 5xx

_TMP_GLOB = ".*.tmp"  # skewtools.io's temp files: .{name}.{hex}.tmp


def remove_partial_writes(folder: Path) -> int:
    """Delete the temp files that writers killed mid-write left in ``folder``'s subfolders.

    Call it only while nothing writes there (before a download stage). Returns how many.
    """
    removed = 0
    for tmp in folder.glob(f"*/{_TMP_GLOB}"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def download_one(
    record: PhotoRecord, layout: Layout, config: DownloadConfig, fetcher: Fetcher,
    decode_slot: AbstractContextManager[Any] | None = None,
) -> PhotoRecord:
    """Fetch, shrink and write one photo; the returned record says how it went.

    ``decode_slot`` (e.g. a semaphore) is held while the image is decoded and re-encoded.
    """
    try:
        path = layout.image_path(record.photo_id)
    except ValueError:  # an id that is not plain digits never becomes a path (search checks too)
        logger.warning("photo id %r is not a Flickr id: recorded as %s", record.photo_id[:40],
                       BAD_ID)
        return record.evolve(status=Status.DOWNLOAD_FAILED, error=BAD_ID, sha256="", width=0,
                             height=0)
    if config.adopt:
        adopted = adopt_written(record, path, config, decode_slot)
        if adopted is not None:
            return adopted
    try:
        if not record.url:
            raise FetchError("no_url")
        record = record.evolve(attempts=record.attempts + 1)
        data = fetcher.fetch(record.url)
        with decode_slot or nullcontext():
            image = process_image(data, max_side=config.max_side, quality=config.quality,
                                  max_pixels=config.max_pixels)
    except (FetchError, ImageError) as exc:
        return _failed(record, path, exc.reason)
    except Exception as exc:  # an exotic failure deep in the HTTP stack is still one photo's
        logger.warning("unexpected error downloading %s", record.url, exc_info=True)
        return _failed(record, path, f"unexpected_{type(exc).__name__}")
    atomic_write_bytes(path, image.jpeg, parents=True)  # the first photo makes its folder
    return record.evolve(status=Status.DOWNLOADED, error="", sha256=image.sha256,
                         width=image.width, height=image.height)


def adopt_written(record: PhotoRecord, path: Path, config: DownloadConfig,
                  decode_slot: AbstractContextManager[Any] | None = None) -> PhotoRecord | None:
    """The DOWNLOADED record of an image a killed run wrote but never recorded, or None.

    Images reach their final name only by ``os.replace`` of a complete temp file (temps are
    never looked at: :func:`remove_partial_writes`), so a final file is whole unless the
    machine itself crashed; it is adopted only if it decodes fully as what this stage writes
    (an RGB JPEG no larger than ``max_side``), else it is fetched again.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        with decode_slot or nullcontext(), Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
            im.load()  # the whole file: a cut-off one raises here
            ok = im.mode == "RGB" and max(im.size) <= config.max_side and not im.info.get("exif")
            size = im.size
    except Exception:  # any decode failure: not ours to keep
        ok = False
    if not ok:
        logger.info("image %s left by an earlier run does not check out: fetching again", path)
        return None
    return record.evolve(status=Status.DOWNLOADED, error="", width=size[0], height=size[1],
                         sha256=hashlib.sha256(data).hexdigest())


def _failed(record: PhotoRecord, path: Path, reason: str) -> PhotoRecord:
    # A file left by an earlier, interrupted run must not outlive a failed record.
    path.unlink(missing_ok=True)
    return record.evolve(status=Status.DOWNLOAD_FAILED, error=reason, sha256="", width=0,
                         height=0)


def download_records(
    records: Iterable[PhotoRecord],
    layout: Layout,
    config: DownloadConfig | None = None,
    *,
    fetcher: Fetcher | None = None,
    total: int | None = None,
) -> Iterator[PhotoRecord]:
    """Download every record's ``url``; yield each record, evolved, as it finishes.

    ``total`` (the number of records, when known) only sizes the progress bar, which also
    shows each host's current request rate.

    Yields records in completion order (not input order). Per-photo problems come back as
    ``Status.DOWNLOAD_FAILED`` records; an ``OSError`` writing an image propagates.
    """
    config = config or DownloadConfig()
    if config.processes > 1:
        if fetcher is not None:
            raise ValueError("a custom fetcher works only with DownloadConfig(processes=1)")
        # Imported here: the fan-out module imports this module's threaded loop.
        from flickr_mammal.download_procs import download_in_processes

        yield from download_in_processes(records, layout, config, total)
        return
    batches = _download_batches(records, layout, config, fetcher, total, batch=1)
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()  # now, not at garbage collection: stops the threads of an early stop


def _download_batches(
    records: Iterable[PhotoRecord], layout: Layout, config: DownloadConfig,
    fetcher: Fetcher | None, total: int | None, batch: int,
) -> Iterator[list[PhotoRecord]]:
    """The threaded loop of :func:`download_records`; yields finished records ``batch`` at a
    time (fewer at the end), so a worker process sends its parent one message per batch."""
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(config)
    # Plain threads over two C-level queues, all bookkeeping in this thread: per photo that is
    # two queue operations, where ThreadPoolExecutor adds a Future, a Condition and callbacks
    # (profiled: ~15% of the GIL time at 300 photos/s).
    todo: queue.SimpleQueue[PhotoRecord | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[PhotoRecord | BaseException] = queue.SimpleQueue()
    stop = threading.Event()
    # Many threads wait on the network, few decode: decoding threads beyond a core's worth only
    # add GIL hand-offs (2 processes x 16 threads on 2 cores: 635 img/s with every thread
    # decoding at once, 752 with one at a time per process). One slot is a plain lock: its
    # waits happen in C, where threading's semaphores run Python code under the GIL.
    slots = (threading.Lock() if config.decode_slots == 1
             else threading.BoundedSemaphore(config.decode_slots))
    threads = [threading.Thread(target=_work, args=(todo, done, stop, layout, config, fetcher,
                                                    slots),
                                name=f"download-{i}", daemon=True) for i in range(config.workers)]
    for thread in threads:
        thread.start()
    counts: Counter[str] = Counter()
    bar = _progress_bar(config, total)
    show = _RateDisplay(bar, fetcher.rates)
    in_flight = 0
    try:
        for record in records:  # read here, never in a worker: the input may be a DB cursor
            todo.put(record)
            in_flight += 1
            if in_flight >= config.in_flight:
                # Past the limit, wait for a whole batch (the other in-flight photos keep the
                # threads busy meanwhile), then read that many new records.
                out = _take(done, counts, bar, min(batch, in_flight))
                in_flight -= len(out)
                yield out
                show.tick()
        while in_flight:
            out = _take(done, counts, bar, min(batch, in_flight))
            in_flight -= len(out)
            yield out
            show.tick()
    finally:
        stop.set()  # a consumer that stops early: skip what is still queued
        for _ in threads:
            todo.put(None)
        for thread in threads:
            thread.join()
        bar.close()
        if own_fetcher:
            fetcher.close()
        _log_summary(counts)


def _work(todo: queue.SimpleQueue, done: queue.SimpleQueue, stop: threading.Event,
          layout: Layout, config: DownloadConfig, fetcher: Fetcher,
          slots: AbstractContextManager[Any]) -> None:
    while (record := todo.get()) is not None:
        if stop.is_set():
            continue
        try:
            done.put(download_one(record, layout, config, fetcher, slots))
        except BaseException as exc:  # a failed disk write: hand it to the consumer
            done.put(exc)


class _NoBar:
    """The progress bar of a loop that shows none. ``tqdm(disable=True)`` would still create
    tqdm's multiprocessing lock, a semaphore that a worker process's fast exit would leak."""

    disable = True

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(config: DownloadConfig, total: int | None) -> tqdm | _NoBar:
    if not config.progress:
        return _NoBar()
    return tqdm(desc="download", unit="img", total=total, disable=None)  # None: TTYs only


class _RateDisplay:
    """Shows each host's current request rate (ratelimit.py) on the bar, once a second."""

    def __init__(self, bar: tqdm | _NoBar, rates: Callable[[], dict[str, float]],
                 every_s: float = 1.0) -> None:
        self.bar, self.rates, self.every_s = bar, rates, every_s
        self._last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            rates = self.rates()
            if rates and not self.bar.disable:
                self.bar.set_postfix_str(rate_text(rates), refresh=False)


def _take(done: queue.SimpleQueue, counts: Counter[str], bar: tqdm | _NoBar,
          n: int) -> list[PhotoRecord]:
    """The next ``n`` finished records (waits for each); a failed disk write raises."""
    return [_account(done.get(), counts, bar) for _ in range(n)]


def _account(item: PhotoRecord | BaseException, counts: Counter[str],
             bar: tqdm | _NoBar) -> PhotoRecord:
    if isinstance(item, BaseException):
        raise item
    counts[item.error] += 1
    bar.update(1)
    return item


def _log_summary(counts: Counter[str]) -> None:
    """One line per download call: successes and each failure reason's count."""
    failures = {reason: n for reason, n in sorted(counts.items()) if reason}
    logger.info("download: %d ok, failures %s", counts[""], failures)

