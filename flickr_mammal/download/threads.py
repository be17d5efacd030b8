"""The threaded loop of one process: ``workers`` threads fetch, decode and write photos
(:func:`flickr_mammal.download.photo.download_one`), this thread reads the input and collects
the results. :mod:`flickr_mammal.download.procs` runs one such loop per worker process."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from tqdm import tqdm

from flickr_mammal.download.config import DownloadConfig
from flickr_mammal.download.photo import download_one
from flickr_mammal.fetch import Fetcher
from flickr_mammal.layout import Layout
from flickr_mammal.ratelimit import rate_text
from flickr_mammal.records import PhotoRecord

logger = logging.getLogger(__name__)


def download_batches(
    records: Iterable[PhotoRecord], layout: Layout, config: DownloadConfig,
    fetcher: Fetcher | None, total: int | None, batch: int,
) -> Iterator[list[PhotoRecord]]:
    """The threaded loop of :func:`~flickr_mammal.download.download_records`; yields finished
    records ``batch`` at a time (fewer at the end), so a worker process sends its parent one
    message per batch."""
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
    bar = progress_bar(config, total)
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
        log_summary(counts)


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


class NoBar:
    """The progress bar of a loop that shows none. ``tqdm(disable=True)`` would still create
    tqdm's multiprocessing lock, a semaphore that a worker process's fast exit would leak."""

    disable = True

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(config: DownloadConfig, total: int | None) -> tqdm | NoBar:
    if not config.progress:
        return NoBar()
    return tqdm(desc="download", unit="img", total=total, disable=None)  # None: TTYs only


class _RateDisplay:
    """Shows each host's current request rate (ratelimit.py) on the bar, once a second."""

    def __init__(self, bar: tqdm | NoBar, rates: Callable[[], dict[str, float]],
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


def _take(done: queue.SimpleQueue, counts: Counter[str], bar: tqdm | NoBar,
          n: int) -> list[PhotoRecord]:
    """The next ``n`` finished records (waits for each); a failed disk write raises."""
    return [_account(done.get(), counts, bar) for _ in range(n)]


def _account(item: PhotoRecord | BaseException, counts: Counter[str],
             bar: tqdm | NoBar) -> PhotoRecord:
    if isinstance(item, BaseException):
        raise item
    counts[item.error] += 1
    bar.update(1)
    return item


def log_summary(counts: Counter[str]) -> None:
    """One line per download call: successes and each failure reason's count."""
    failures = {reason: n for reason, n in sorted(counts.items()) if reason}
    logger.info("download: %d ok, failures %s", counts[""], failures)
