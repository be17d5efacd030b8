"""Download stage: fetch every searched photo, shrink it, write it, record the outcome.

REFERENCE.md section 1 (images stored at 300 px). Modelled on img2dataset's downloader: each
photo's failure is data (``status=DOWNLOAD_FAILED``, ``error`` a short reason such as
``http_404``, ``timeout``, ``too_large``, ``not_an_image``, ``truncated``, ``unavailable`` for
Flickr's redirect to its "photo unavailable" placeholder), never an exception.
Only problems of the machine itself (a failed disk write) propagate.

Threads first: the network wait and Pillow's decode and resize release the GIL, so one
process with ``workers`` threads runs them in parallel. Each thread keeps its own
``requests.Session`` (connection pooling, keep-alive); a per-host semaphore caps how many
requests hit one server at once, held only while fetching, not while decoding. The threads
still hold the GIL ~1.4 ms per photo (requests, Pillow's JPEG encoder), so one process tops out
near 1.5 cores; ``processes=N`` runs N such processes for more.

Output order is completion order, not input order. Input records are read lazily and at most
``max_in_flight`` (per process) are queued at any time, so memory stays bounded for 700K
records.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.exceptions import ReadTimeoutError

from flickr_mammal.imaging import DEFAULT_MAX_PIXELS, ImageError, process_image
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status

logger = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "noniid-quagmire-flickr-mammal/0.1 (research dataset build; python-requests)"
_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 500, 502, 503, 504})
_UNAVAILABLE = "photo_unavailable"  # Flickr's placeholder: .../images/en-us/photo_unavailable.png


@dataclass(frozen=True)
class DownloadConfig:
    """How to fetch and shrink photos. Times are seconds."""

    workers: int = 32                 # threads (per process): fetch + decode + write
    processes: int = 1                # >1: that many worker processes ("spawn"), for more cores
    per_host: int = 16                # concurrent requests to one host (Flickr's CDN is one)
    timeout: float = 10.0             # connect timeout and per-read timeout
    total_timeout: float = 60.0       # a whole attempt, checked between body chunks
    max_retries: int = 3              # extra attempts for 5xx / 408 / 429 / timeouts / resets
    backoff_base: float = 0.5         # full-jitter exponential backoff: U(0, base * 2**attempt)
    backoff_max: float = 30.0
    max_retry_after: float = 120.0    # a 429 asking to wait longer than this fails instead
    max_bytes: int = 20 * 1024 * 1024  # stop reading a body past this: "too_large"
    max_side: int = 300
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    user_agent: str = DEFAULT_USER_AGENT
    max_in_flight: int = 0            # records queued in the pool; 0 = 4 x workers
    seed: int = 0                     # backoff jitter
    progress: bool = False            # tqdm bar over finished records

    def __post_init__(self) -> None:
        for name in ("workers", "processes", "per_host", "max_bytes", "max_side", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"DownloadConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"DownloadConfig.{name} must be > 0 seconds")
        for name in ("max_retries", "backoff_base", "backoff_max", "max_retry_after",
                     "max_in_flight"):
            if getattr(self, name) < 0:
                raise ValueError(f"DownloadConfig.{name} must be >= 0, got {getattr(self, name)}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"DownloadConfig.quality must be in 1..95, got {self.quality}")
        if not self.user_agent.strip():
            raise ValueError("DownloadConfig.user_agent must be non-empty: say who is downloading")

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or 4 * self.workers


class FetchError(Exception):
    """A URL that gave no usable body; ``reason`` is short and machine-readable."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Retryable(FetchError):
    """A failure worth another attempt (server overload, timeout, dropped connection)."""


class Fetcher:
    """Thread-safe HTTP GET with retries, per-host limits and a body size cap.

    Keeps one ``requests.Session`` per calling thread; :meth:`close` them when done.
    """

    def __init__(self, config: DownloadConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: list[requests.Session] = []
        self._hosts: dict[str, threading.Semaphore] = {}
        self._proxy_cache: dict[tuple[str, str], dict[str, str]] = {}
        self._rng = random.Random(config.seed)
        self._headers = {"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.8",
                         "Accept-Encoding": "gzip, deflate"}

    def fetch(self, url: str) -> bytes:
        """The body of ``url``; raises :class:`FetchError` once retries are spent."""
        attempt = 0
        while True:
            try:
                with self._host_slot(url):
                    return self._fetch_once(url)
            except _Retryable as exc:
                wait_s = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if attempt >= self.config.max_retries or wait_s > self.config.max_retry_after:
                    raise FetchError(exc.reason) from exc
                logger.debug("retry %d of %s after %s, waiting %.2fs", attempt + 1, url,
                             exc.reason, wait_s)
                self._sleep(wait_s)  # outside the host slot: others may use the server
                attempt += 1

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return self._rng.uniform(0.0, cap)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            # One thread makes one request at a time: a small pool per host is enough.
            adapter = HTTPAdapter(pool_connections=8, pool_maxsize=2, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            # requests re-reads proxy settings from os.environ on every request (~0.4 ms of
            # GIL time each); read them once per host instead (_proxies) and the CA bundle here.
            session.trust_env = False
            session.verify = (os.environ.get("REQUESTS_CA_BUNDLE")
                              or os.environ.get("CURL_CA_BUNDLE") or True)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL's host (honours NO_PROXY), cached."""
        key = urlsplit(url)[:2]
        proxies = self._proxy_cache.get(key)
        if proxies is None:
            proxies = requests.utils.get_environ_proxies(url)
            with self._lock:
                self._proxy_cache[key] = proxies
        return proxies

    @contextmanager
    def _host_slot(self, url: str) -> Iterator[None]:
        host = urlsplit(url).netloc.lower()
        with self._lock:
            slot = self._hosts.setdefault(host, threading.BoundedSemaphore(self.config.per_host))
        with slot:
            yield

    def _fetch_once(self, url: str) -> bytes:
        cfg = self.config
        try:
            # A bare PreparedRequest + send() skips Session.request's per-call merging of
            # cookies, auth, hooks and settings that an image GET does not use (GIL time).
            request = requests.PreparedRequest()
            request.prepare(method="GET", url=url, headers=self._headers)
            with self._session().send(request, stream=True, timeout=(cfg.timeout, cfg.timeout),
                                      proxies=self._proxies(url)) as r:
                _check_status(r)
                length = r.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > cfg.max_bytes:
                    raise FetchError("too_large")
                return _read_body(r, cfg.max_bytes, time.monotonic() + cfg.total_timeout)
        except requests.RequestException as exc:
            raise _classify(exc) from exc


def _check_status(r: requests.Response) -> None:
    code = r.status_code
    if r.history and _UNAVAILABLE in r.url:
        # Flickr answers a deleted photo with a redirect to a stock placeholder image.
        raise FetchError("unavailable")
    if code == 429:
        raise _Retryable("http_429", _retry_after(r.headers.get("Retry-After")))
    if code in _RETRY_STATUS or code >= 500:
        raise _Retryable(f"http_{code}")
    if code != 200:
        raise FetchError(f"http_{code}")


def _read_body(r: requests.Response, max_bytes: int, deadline: float) -> bytes:
    body = bytearray()
    for chunk in r.iter_content(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FetchError("too_large")
        if time.monotonic() > deadline:
            raise _Retryable("timeout")
    return bytes(body)


def _classify(exc: requests.RequestException) -> FetchError:
    """Map a requests exception to a reason, retryable or not."""
    if isinstance(exc, requests.Timeout) or any(
        isinstance(a, ReadTimeoutError) for a in exc.args
    ):
        return _Retryable("timeout")
    if isinstance(exc, (requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return _Retryable("connection_error")
    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return FetchError("invalid_url")
    if isinstance(exc, requests.TooManyRedirects):
        return FetchError("too_many_redirects")
    return FetchError(f"request_error_{type(exc).__name__}")


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            f = open(tmp, "wb")
        except FileNotFoundError:  # first photo in this fan-out folder
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, "wb")
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def download_one(
    record: PhotoRecord, layout: Layout, config: DownloadConfig, fetcher: Fetcher
) -> PhotoRecord:
    """Fetch, shrink and write one photo; the returned record says how it went."""
    path = layout.image_path(record.photo_id)
    try:
        if not record.url:
            raise FetchError("no_url")
        data = fetcher.fetch(record.url)
        image = process_image(data, max_side=config.max_side, quality=config.quality,
                              max_pixels=config.max_pixels)
    except (FetchError, ImageError) as exc:
        return _failed(record, path, exc.reason)
    except Exception as exc:  # an exotic failure deep in the HTTP stack is still one photo's
        logger.warning("unexpected error downloading %s", record.url, exc_info=True)
        return _failed(record, path, f"unexpected_{type(exc).__name__}")
    write_atomic(path, image.jpeg)
    return record.evolve(status=Status.DOWNLOADED, error="", sha256=image.sha256,
                         width=image.width, height=image.height)


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
) -> Iterator[PhotoRecord]:
    """Download every record's ``url``; yield each record, evolved, as it finishes.

    Yields records in completion order (not input order). Per-photo problems come back as
    ``Status.DOWNLOAD_FAILED`` records; an ``OSError`` writing an image propagates.
    """
    config = config or DownloadConfig()
    if config.processes > 1:
        if fetcher is not None:
            raise ValueError("a custom fetcher works only with DownloadConfig(processes=1)")
        yield from _download_in_processes(records, layout, config)
        return
    own_fetcher = fetcher is None
    fetcher = fetcher or Fetcher(config)
    # Plain threads over two C-level queues, all bookkeeping in this thread: per photo that is
    # two queue operations, where ThreadPoolExecutor adds a Future, a Condition and callbacks
    # (profiled: ~15% of the GIL time at 300 photos/s).
    todo: queue.SimpleQueue[PhotoRecord | None] = queue.SimpleQueue()
    done: queue.SimpleQueue[PhotoRecord | BaseException] = queue.SimpleQueue()
    stop = threading.Event()
    threads = [threading.Thread(target=_work, args=(todo, done, stop, layout, config, fetcher),
                                name=f"download-{i}", daemon=True) for i in range(config.workers)]
    for thread in threads:
        thread.start()
    counts: Counter[str] = Counter()
    bar = tqdm(desc="download", unit="img", disable=not config.progress)
    in_flight = 0
    try:
        for record in records:  # read here, never in a worker: the input may be a DB cursor
            todo.put(record)
            in_flight += 1
            while in_flight >= config.in_flight:
                in_flight -= 1
                yield _take(done, counts, bar)
        while in_flight:
            in_flight -= 1
            yield _take(done, counts, bar)
    finally:
        stop.set()  # a consumer that stops early: skip what is still queued
        for _ in threads:
            todo.put(None)
        for thread in threads:
            thread.join()
        bar.close()
        if own_fetcher:
            fetcher.close()
        logger.info("download: %d ok, failures %s", counts.pop("", 0), dict(counts))


def _work(todo: queue.SimpleQueue, done: queue.SimpleQueue, stop: threading.Event,
          layout: Layout, config: DownloadConfig, fetcher: Fetcher) -> None:
    while (record := todo.get()) is not None:
        if stop.is_set():
            continue
        try:
            done.put(download_one(record, layout, config, fetcher))
        except BaseException as exc:  # a failed disk write: hand it to the consumer
            done.put(exc)


def _take(done: queue.SimpleQueue, counts: Counter[str], bar: tqdm) -> PhotoRecord:
    item = done.get()
    if isinstance(item, BaseException):
        raise item
    counts[item.error] += 1
    bar.update(1)
    return item


def _download_in_processes(
    records: Iterable[PhotoRecord], layout: Layout, config: DownloadConfig
) -> Iterator[PhotoRecord]:
    """Fan records out to ``config.processes`` processes that each run the threaded loop.

    The threaded loop holds the GIL ~1.4 ms per photo (requests, Pillow's JPEG encoder), which
    caps one process at ~1.5 cores; processes lift that cap, as img2dataset does.
    """
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs threads
    child = dataclasses.replace(config, processes=1, progress=False)
    todo, done, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_process_main, args=(todo, done, stop, layout, child),
                         name=f"download-proc-{i}", daemon=True)
             for i in range(config.processes)]
    for proc in procs:
        proc.start()
    limit, in_flight, ended = config.in_flight * config.processes, 0, False
    bar = tqdm(desc="download", unit="img", disable=not config.progress)
    try:
        for record in records:  # read in this process only (the input may be a DB cursor)
            todo.put(record)
            in_flight += 1
            while in_flight >= limit:
                in_flight -= 1
                yield _take(done, Counter(), bar)
        for _ in procs:  # children flush what they hold once their input ends
            todo.put(None)
        ended = True
        while in_flight:
            in_flight -= 1
            yield _take(done, Counter(), bar)
    finally:
        stop.set()
        if not ended:
            for _ in procs:
                todo.put(None)
        for proc in procs:
            proc.join(timeout=config.total_timeout + 10)
            if proc.is_alive():
                proc.terminate()
        todo.cancel_join_thread()
        bar.close()


def _process_main(todo: Any, done: Any, stop: Any, layout: Layout,
                  config: DownloadConfig) -> None:
    def incoming() -> Iterator[PhotoRecord]:
        while (record := todo.get()) is not None:
            if not stop.is_set():
                yield record

    try:
        for record in download_records(incoming(), layout, config):
            done.put(record)
    except BaseException as exc:  # a failed disk write: hand it to the parent
        done.put(exc)
