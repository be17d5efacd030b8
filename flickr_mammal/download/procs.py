"""Download stage, many processes: fan records out to worker processes that each run the
threaded loop of :mod:`flickr_mammal.download.threads`.

One threaded loop decodes ``decode_slots`` photos at a time and holds the GIL for its Python
parts; ``DownloadConfig(processes=N)`` runs N such loops in ``spawn``-ed processes to use more
cores, as img2dataset does. Records travel in batches both ways (:func:`_ipc_batch`). A worker
dies with its parent (:func:`_exit_with_parent`); a dead worker is an error
(:class:`~flickr_mammal.download.DownloadWorkerLost`), never a hang.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import queue
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from flickr_mammal.download.config import DownloadConfig, DownloadWorkerLost
from flickr_mammal.download.threads import NoBar, download_batches, log_summary, progress_bar
from flickr_mammal.fetch import Fetcher
from flickr_mammal.imaging import single_threaded_opencv
from flickr_mammal.layout import Layout
from flickr_mammal.ratelimit import rate_text
from flickr_mammal.records import PhotoRecord

_LIVENESS_CHECK_S = 1.0  # how often a waiting parent checks that its worker processes live
_IPC_BATCH = 16  # most records per message to or from a worker process (_ipc_batch)


@dataclass(frozen=True)
class _RateReport:
    """A worker process's per-host rates, sent to the parent's progress bar."""

    process: int
    rates: dict[str, float]



def _take_from_processes(done: Any, counts: Counter[str], bar: tqdm | NoBar,
                         procs: list[Any], rates: dict[int, dict[str, float]]
                         ) -> list[PhotoRecord]:
    """The threaded loop's ``_take`` for worker processes (a batch per message): fail instead
    of waiting forever on a dead worker."""
    while True:
        if any(p.exitcode not in (None, 0) for p in procs):
            _worker_lost(procs)
        try:
            item = done.get(timeout=_LIVENESS_CHECK_S)
            if isinstance(item, _RateReport):  # the sum over processes: what a host sees
                rates[item.process] = item.rates
                total: Counter[str] = Counter()
                for per_host in rates.values():
                    total.update(per_host)
                if not bar.disable:
                    bar.set_postfix_str(rate_text(dict(total)), refresh=False)
                continue
            return _account_batch(item, counts, bar)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                try:  # a result written just before its worker ended is still in the pipe
                    return _account_batch(done.get(timeout=_LIVENESS_CHECK_S), counts, bar)
                except queue.Empty:
                    _worker_lost(procs)


def _account_batch(item: list[PhotoRecord] | BaseException, counts: Counter[str],
                   bar: tqdm | NoBar) -> list[PhotoRecord]:
    if isinstance(item, BaseException):
        raise item
    for record in item:
        counts[record.error] += 1
    bar.update(len(item))
    return item


def _worker_lost(procs: list[Any]) -> None:
    """Results are missing: a worker died, or all ended before reporting everything."""
    codes = ", ".join(f"{p.name}: exit code {p.exitcode}" for p in procs)
    raise DownloadWorkerLost(
        f"a download worker process ended without reporting all its photos ({codes}; a "
        f"negative code is the signal, e.g. -9 from the OOM killer). Its photos are not "
        f"recorded: a resumed build fetches them again.")


def _ipc_batch(config: DownloadConfig) -> int:
    """Records per message between the parent and a worker process: one pickle, pipe write and
    wake-up per batch instead of per photo (a quarter of a process's in-flight records)."""
    return max(1, min(_IPC_BATCH, config.in_flight // 4))


def download_in_processes(
    records: Iterable[PhotoRecord], layout: Layout, config: DownloadConfig,
    total: int | None = None,
) -> Iterator[PhotoRecord]:
    """Fan records out to ``config.processes`` processes that each run the threaded loop.

    One threaded loop decodes ``decode_slots`` photos at a time and holds the GIL for its
    Python parts; processes use more cores, as img2dataset does. Records travel in batches
    both ways (:func:`_ipc_batch`). No deadlock: this process waits for results only once its
    ``processes x in_flight`` records are all sent, and a worker waits for input only below
    its own ``in_flight`` with every finished batch sent, so some worker is at its limit and
    sends a batch.
    """
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    child = dataclasses.replace(config, processes=1, progress=False)
    todo, done, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_process_main, args=(todo, done, stop, layout, child, i,
                                                     config.progress),
                         name=f"download-proc-{i}", daemon=True)
             for i in range(config.processes)]
    for proc in procs:
        proc.start()
    limit, in_flight, ended = config.in_flight * config.processes, 0, False
    size = _ipc_batch(config)
    batch: list[PhotoRecord] = []
    counts: Counter[str] = Counter()
    bar = progress_bar(config, total)
    rates: dict[int, dict[str, float]] = {}
    try:
        for record in records:  # read in this process only (the input may be a DB cursor)
            batch.append(record)
            in_flight += 1
            if len(batch) >= size or in_flight >= limit:
                todo.put(batch)
                batch = []
            while in_flight >= limit:
                out = _take_from_processes(done, counts, bar, procs, rates)
                in_flight -= len(out)
                yield from out
        if batch:
            todo.put(batch)
        for _ in procs:  # children flush what they hold once their input ends
            todo.put(None)
        ended = True
        while in_flight:
            out = _take_from_processes(done, counts, bar, procs, rates)
            in_flight -= len(out)
            yield from out
    finally:
        stop.set()
        if not ended:
            for _ in procs:
                todo.put(None)
        # A worker killed while it held the input queue's lock blocks the others for good: once
        # one has died, stop the rest at once instead of waiting out their join timeout.
        died = any(p.exitcode not in (None, 0) for p in procs)
        for proc in procs:
            proc.join(timeout=1.0 if died else config.total_timeout + 10)
            if proc.is_alive():
                proc.terminate()
                proc.join()
        if ended and all(p.exitcode == 0 for p in procs):
            # Every batch and sentinel was read, so the input queue's feeder thread ends at
            # once: end it here. Left to the interpreter's exit, it can drop the queue's last
            # locks (and unlink their semaphores) while exit freezes it, before it tells the
            # resource tracker, which then warns of a "leaked semaphore" (1 run in 210 here).
            todo.close()
            todo.join_thread()
        else:       # a dead worker may leave the pipe full: joining the feeder could hang
            todo.cancel_join_thread()
        bar.close()
        log_summary(counts)


def _process_main(todo: Any, done: Any, stop: Any, layout: Layout,
                  config: DownloadConfig, index: int = 0, report_rates: bool = False) -> None:
    _exit_with_parent()
    # This process's threads are its parallelism: OpenCV's own thread pool under each of them
    # only adds hand-offs (img2dataset's resizer does the same).
    single_threaded_opencv()
    fetcher = Fetcher(config)
    last_report = time.monotonic()

    def incoming() -> Iterator[PhotoRecord]:
        while (batch := todo.get()) is not None:
            for record in batch:
                if not stop.is_set():
                    yield record

    try:
        for batch in download_batches(incoming(), layout, config, fetcher, None,
                                       _ipc_batch(config)):
            done.put(batch)
            if report_rates and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                done.put(_RateReport(index, fetcher.rates()))
    except BaseException as exc:  # a failed disk write: hand it to the parent
        done.put(exc)
    finally:
        fetcher.close()
    if stop.is_set():
        # The parent stopped reading (its consumer quit early): exit now instead of blocking
        # until the parent's join times out, flushing records nobody will read into a full pipe.
        done.cancel_join_thread()
    else:
        done.close()
        done.join_thread()  # every result is in the pipe
    # Images are written and closed, results sent: skip the interpreter's teardown of numpy,
    # OpenCV and Pillow (0.1-0.4 s that the parent's join waited for at every stage's end).
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(0)


def _exit_with_parent() -> None:
    """End this worker process as soon as its parent dies (``kill -9``, OOM killer).

    An orphan would otherwise wait forever for records, or keep fetching and writing images
    next to the resumed build. What it finished but did not report is not in the catalog and is
    fetched again on resume; a half-written image is a temp file that ``os.replace`` never moved.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
