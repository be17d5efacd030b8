"""HTTP fetcher for the download stage: retries, per-host limits, a body size cap.

docs/reference.md section 1. A failed URL raises :class:`FetchError` with a short, machine-readable
``reason`` (``http_404``, ``timeout``, ``too_large``, ``unavailable`` for Flickr's redirect to
its "photo unavailable" placeholder, ...); :mod:`flickr_mammal.download` records it on the photo.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError

from flickr_mammal._util import retry_after_seconds

if TYPE_CHECKING:  # download imports this module; the config is only read, never built, here
    from flickr_mammal.download import DownloadConfig

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 500, 502, 503, 504})
_UNAVAILABLE = "photo_unavailable"  # Flickr's placeholder: .../images/en-us/photo_unavailable.png


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
        raise _Retryable("http_429", retry_after_seconds(r.headers.get("Retry-After")))
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
