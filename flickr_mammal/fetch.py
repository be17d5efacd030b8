"""HTTP fetcher for the download stage: retries, per-host limits, a size cap, a deadline.

docs/reference.md section 1. A failed URL raises :class:`FetchError` with a short, machine-readable
``reason`` (``http_404``, ``timeout``, ``too_large``, ``unavailable`` for Flickr's redirect to
its "photo unavailable" placeholder, ``redirect_refused``, ...); :mod:`flickr_mammal.download`
records it on the photo. :class:`FetchConfig` (the HTTP half of the download options) lives here,
so this module imports nothing from the download stage.

Safety (the URLs come from the network):

* Deadline: one attempt ends ``total_timeout`` seconds after it started, however slowly the
  server sends. The body is read one socket read at a time (``read1``) with the socket's
  timeout cut to the time left, so a body trickled a byte at a time fails as ``timeout``.
* Hosts: a URL is fetched only when it is http(s), carries no ``user:password@`` and names
  Flickr's image hosts or a host in ``FetchConfig.image_hosts`` (:mod:`flickr_mammal.image_hosts`);
  any other is the failure ``url_refused`` and is never requested.
* Redirects are followed by hand (at most :data:`MAX_REDIRECTS`), and only to the original
  host or to the same allowed hosts; any other target is the failure ``redirect_refused`` and is
  never requested.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
import urllib3.exceptions
from urllib3.exceptions import ReadTimeoutError

from flickr_mammal._util import retry_after_seconds
from flickr_mammal.image_hosts import (
    DEFAULT_PORTS,
    FLICKR_HOSTS,
    URL_REFUSED,
    check_patterns,
    redirect_allowed,
    url_allowed,
)
from flickr_mammal.ratelimit import HostRate, RatePolicy

logger = logging.getLogger(__name__)

_CHUNK = 64 * 1024
_RETRY_STATUS = frozenset({408, 500, 502, 503, 504})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SLOW_DOWN = frozenset({"http_429", "http_503"})  # answers that cut the host's rate
_UNAVAILABLE = "photo_unavailable"  # Flickr's placeholder: .../images/en-us/photo_unavailable.png
MAX_REDIRECTS = 5
__all__ = ["FLICKR_HOSTS", "FetchConfig", "FetchError", "Fetcher", "redirect_allowed"]

DEFAULT_USER_AGENT = "noniid-quagmire-flickr-mammal/0.1 (research dataset build; urllib3)"


@dataclass(frozen=True)
class FetchConfig:
    """How to fetch one URL. Times are seconds."""

    per_host: int = 16                # concurrent requests to one host (Flickr's CDN is one)
    timeout: float = 10.0             # connect timeout and per-read timeout
    total_timeout: float = 60.0       # wall-clock limit of one attempt, body included
    max_retries: int = 3              # extra attempts for 5xx / 408 / 429 / timeouts / resets
    backoff_base: float = 0.5         # full-jitter exponential backoff: U(0, base * 2**attempt)
    backoff_max: float = 30.0
    max_retry_after: float = 120.0    # a 429 asking to wait longer than this fails instead
    max_bytes: int = 20 * 1024 * 1024  # stop reading a body past this: "too_large"
    user_agent: str = DEFAULT_USER_AGENT
    seed: int = 0                     # backoff jitter
    # Extra hosts image URLs may name and redirect to, besides Flickr's (image_hosts.py):
    # "host" (default ports), "host:port", or "*.domain" (any subdomain, default ports).
    image_hosts: tuple[str, ...] = ()
    # True: fetch URLs on any http(s) host (redirects still follow the rule above); only for
    # URLs from a source you trust as much as Flickr's own answers.
    any_image_host: bool = False
    # Adaptive per-host request rate (ratelimit.py): back off on 429/503, recover slowly.
    adaptive_rate: bool = True
    min_rate: float = 0.5             # requests/s per host and process, the slowest it goes

    def __post_init__(self) -> None:
        name = type(self).__name__
        for field in ("per_host", "max_bytes"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field} must be >= 1, got {getattr(self, field)}")
        for field in ("timeout", "total_timeout"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{name}.{field} must be > 0 seconds")
        for field in ("max_retries", "backoff_base", "backoff_max", "max_retry_after"):
            if getattr(self, field) < 0:
                raise ValueError(f"{name}.{field} must be >= 0, got {getattr(self, field)}")
        if not self.min_rate > 0:
            raise ValueError(f"{name}.min_rate must be > 0 requests/s, got {self.min_rate}")
        if not self.user_agent.strip():
            raise ValueError(f"{name}.user_agent must be non-empty: say who is downloading")
        object.__setattr__(self, "image_hosts",
                           check_patterns(self.image_hosts, f"{name}.image_hosts"))


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

    Talks urllib3 directly (one thread-safe pool manager, keep-alive connections per host):
    requests' session machinery cost about twice the client CPU per photo (0.57 against 0.29
    ms on 8 threads, net-hardening's profile). :meth:`close` the pools when done.
    """

    def __init__(self, config: FetchConfig, sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._managers: dict[str, urllib3.PoolManager] = {}  # "" = direct, else the proxy URL
        self._hosts: dict[str, threading.Semaphore] = {}
        self._rates: dict[str, HostRate] = {}
        self._policy = RatePolicy(min_rate=config.min_rate, max_pause=config.max_retry_after)
        self._proxy_cache: dict[tuple[str, str], str] = {}
        self._rng = random.Random(config.seed)
        self._headers = {"User-Agent": config.user_agent, "Accept": "image/*,*/*;q=0.8",
                         "Accept-Encoding": "gzip, deflate"}

    def fetch(self, url: str) -> bytes:
        """The body of ``url``; raises :class:`FetchError` once retries are spent, or at once
        (``url_refused``, nothing requested) for a URL outside the allowed hosts."""
        if not url_allowed(url, self.config.image_hosts, self.config.any_image_host):
            logger.info("refused %s: not on an allowed image host", url)
            raise FetchError(URL_REFUSED)
        attempt = 0
        host = urlsplit(url).netloc.lower()
        rate = self._rate(host)
        waited_pause = False
        while True:
            try:
                with self._host_slot(host, rate, honour_pause=not waited_pause):
                    body = self._fetch_once(url)
                if rate is not None:
                    rate.success()
                return body
            except _Retryable as exc:
                if rate is not None and exc.reason in _SLOW_DOWN:
                    rate.throttled(exc.retry_after)  # every thread of the process slows down
                wait_s = exc.retry_after if exc.retry_after is not None else self._backoff(attempt)
                if attempt >= self.config.max_retries or wait_s > self.config.max_retry_after:
                    raise FetchError(exc.reason) from exc
                logger.debug("retry %d of %s after %s, waiting %.2fs", attempt + 1, url,
                             exc.reason, wait_s)
                self._sleep(wait_s)  # outside the host slot: others may use the server
                waited_pause = exc.retry_after is not None
                attempt += 1

    def rates(self) -> dict[str, float]:
        """Each host's current request rate (requests/s; inf while unpaced)."""
        with self._lock:
            return {host: r.rate for host, r in self._rates.items()}

    def close(self) -> None:
        with self._lock:
            for manager in self._managers.values():
                manager.clear()
            self._managers.clear()

    def _backoff(self, attempt: int) -> float:
        cap = min(self.config.backoff_max, self.config.backoff_base * 2**attempt)
        return self._rng.uniform(0.0, cap)

    def _manager(self, url: str) -> urllib3.PoolManager:
        """The pool manager for ``url``: direct, or through the environment's proxy for it."""
        proxy = self._proxy(url)
        manager = self._managers.get(proxy)
        if manager is None:
            # The CA bundle the way requests reads it, so an existing setup keeps working.
            ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
            # One thread makes one request at a time and per_host caps a host's threads: a
            # pool of per_host connections per host never has to open a throwaway one.
            kwargs = dict(num_pools=64, maxsize=self.config.per_host, retries=False,
                          headers=self._headers, ca_certs=ca)
            with self._lock:
                manager = self._managers.get(proxy) or (
                    urllib3.ProxyManager(proxy, **kwargs) if proxy
                    else urllib3.PoolManager(**kwargs))
                self._managers[proxy] = manager
        return manager

    def _proxy(self, url: str) -> str:
        """The environment's proxy for this URL's host ("" for none; honours NO_PROXY), cached:
        reading os.environ per request costs GIL time."""
        key = urlsplit(url)[:2]
        proxy = self._proxy_cache.get(key)
        if proxy is None:
            scheme, netloc = key
            host = netloc.rsplit("@", 1)[-1]
            proxy = "" if urllib.request.proxy_bypass(host) else (
                urllib.request.getproxies().get(scheme, ""))
            with self._lock:
                self._proxy_cache[key] = proxy
        return proxy

    def _rate(self, host: str) -> HostRate | None:
        if not self.config.adaptive_rate:
            return None
        rate = self._rates.get(host)
        if rate is None:
            with self._lock:
                rate = self._rates.setdefault(host, HostRate(self._policy))
        return rate

    @contextmanager
    def _host_slot(self, host: str, rate: HostRate | None,
                   honour_pause: bool = True) -> Iterator[None]:
        if rate is not None:
            wait = rate.reserve(honour_pause)
            if wait > 0:
                time.sleep(wait)  # real time, not self._sleep: pacing is not a retry backoff
        with self._lock:
            slot = self._hosts.setdefault(host, threading.BoundedSemaphore(self.config.per_host))
        with slot:
            yield

    def _fetch_once(self, url: str) -> bytes:
        cfg = self.config
        deadline = time.monotonic() + cfg.total_timeout
        r = None
        try:
            r = self._send(url, deadline)
            _check_status(r)
            length = r.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > cfg.max_bytes:
                raise FetchError("too_large")
            body = _read_body(r, cfg.max_bytes, cfg.timeout, deadline)
        except urllib3.exceptions.HTTPError as exc:
            if r is not None:
                r.close()  # a broken connection never goes back to the pool
            raise _classify_urllib3(exc) from exc
        except BaseException:
            if r is not None:
                r.close()
            raise
        finally:
            if r is not None:
                r.release_conn()
        return body

    def _send(self, url: str, deadline: float) -> urllib3.BaseHTTPResponse:
        """GET ``url``, following only the redirects :func:`redirect_allowed` accepts."""
        cfg = self.config
        target = url
        for _ in range(MAX_REDIRECTS + 1):
            if urlsplit(target).scheme.lower() not in DEFAULT_PORTS:
                raise FetchError("invalid_url")
            wait = min(cfg.timeout, _time_left(deadline))
            r = self._manager(target).request(
                "GET", target, redirect=False, retries=False, preload_content=False,
                decode_content=True, timeout=urllib3.Timeout(connect=wait, read=wait))
            location = r.headers.get("Location")
            if r.status not in _REDIRECTS or not location:
                return r
            r.close()  # not drained: a redirect's body could be endless
            r.release_conn()
            target = urljoin(target, location)
            if _UNAVAILABLE in target:
                # Flickr answers a deleted photo with a redirect to a stock placeholder image.
                raise FetchError("unavailable")
            if not redirect_allowed(url, target, cfg.image_hosts):
                logger.info("refused a redirect from %s to %s (not an allowed host)", url, target)
                raise FetchError("redirect_refused")
        raise FetchError("too_many_redirects")


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Retryable("timeout")
    return left


def _check_status(r: urllib3.BaseHTTPResponse) -> None:
    code = r.status
    if code == 429:
        raise _Retryable("http_429", retry_after_seconds(r.headers.get("Retry-After")))
    if code in _RETRY_STATUS or code >= 500:
        raise _Retryable(f"http_{code}")
    if code != 200:
        raise FetchError(f"http_{code}")


def _read_body(r: urllib3.BaseHTTPResponse, max_bytes: int, read_timeout: float,
               deadline: float) -> bytes:
    """The body, one socket read at a time, until ``deadline`` (a slow trickle fails too)."""
    sock = _socket_of(r)
    chunks: list[bytes] = []
    size = 0
    while True:
        left = _time_left(deadline)
        # No single read may outlast the deadline. The socket's timeout is already at most
        # read_timeout (set at the request), so it is cut only once the deadline is nearer.
        if sock is not None and left < read_timeout:
            sock.settimeout(left)
        # read1: what one read of the socket gives (up to _CHUNK), not a full _CHUNK, so the
        # deadline is checked after every arrival however small.
        chunk = r.read1(_CHUNK, decode_content=True)
        if not chunk:
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one copy at most
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise FetchError("too_large")


def _socket_of(r: urllib3.BaseHTTPResponse) -> socket.socket | None:
    connection = getattr(r, "connection", None)
    sock = getattr(connection, "sock", None)
    return sock if isinstance(sock, socket.socket) else None


def _classify_urllib3(exc: urllib3.exceptions.HTTPError) -> FetchError:
    """Map a urllib3 exception (request or body read) to a reason, retryable or not."""
    if isinstance(exc, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProxyError,
                        urllib3.exceptions.ProtocolError, urllib3.exceptions.SSLError)):
        return _Retryable("connection_error")  # refused, reset, or a body cut short
    if isinstance(exc, (ReadTimeoutError, urllib3.exceptions.TimeoutError)):
        return _Retryable("timeout")
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return FetchError("bad_encoding")
    if isinstance(exc, (urllib3.exceptions.LocationValueError,
                        urllib3.exceptions.URLSchemeUnknown)):
        return FetchError("invalid_url")
    return FetchError(f"request_error_{type(exc).__name__}")
