"""A small Flickr REST client: errors, a token-bucket rate limit and retries (docs/reference.md §2).

Flickr answers errors as HTTP 200 with ``{"stat": "fail", "code": N, "message": ...}``. Codes
95-100 (SSL, signature, auth token, permissions, invalid or expired key) can never succeed on a
retry, so they raise :class:`FlickrAuthError` at once; 10 ("search API not currently
available"), 105 ("service currently unavailable") and 106 ("temporary issue") are transient and
retried like a 5xx; every other fail code raises :class:`FlickrError`.

Calls are POSTed (Flickr's REST format takes GET or POST): the key travels in the body, so it
is not in URLs that urllib3 logs at DEBUG or that proxies record. As a second guard every message
that leaves this module goes through :func:`redact`, and exceptions are raised without their
``requests`` cause, so no traceback carries the original text. Redirects are never followed:
a 307/308 would re-POST the key to wherever it points, so any 3xx is a :class:`FlickrError`
naming the target (point ``endpoint`` at it if it is really Flickr).

Answers are checked before use (:func:`check_search_answer`): a ``photos`` object whose
``total``/``pages`` are not whole numbers or whose ``photo`` is not a list of objects is retried
``bad_answer_retries`` times, then raises :class:`FlickrBadAnswer`, which the search records as
a failed slice.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from flickr_mammal._util import int_or, retry_after_seconds

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://api.flickr.com/services/rest/"
AUTH_CODES = frozenset({95, 96, 97, 98, 99, 100})
TRANSIENT_CODES = frozenset({10, 105, 106})
_KEY_IN_URL = re.compile(r"(api_key=)[^&\s'\"]+")


class FlickrError(RuntimeError):
    """Flickr refused a call (``code`` is Flickr's fail code, or the HTTP status, or 0)."""

    def __init__(self, code: int, message: str, text: str | None = None) -> None:
        super().__init__(text or (f"Flickr error {code}: {message}" if code else message))
        self.code = code
        self.message = message


class FlickrAuthError(FlickrError):
    """The key (or the account behind it) was rejected: nothing will work until it is fixed."""

    def __init__(self, code: int, message: str, text: str | None = None) -> None:
        super().__init__(code, message, text or (
            f"Flickr rejected the API key (code {code}: {message}). "
            "Pass --api-key or set FLICKR_API_KEY."
        ))


class FlickrUnavailableError(FlickrError):
    """Transient failures (5xx, 429, timeouts, connection errors) outlasted every retry."""


class FlickrBadAnswer(FlickrError):
    """An ``ok`` answer whose content is malformed, on every one of the allowed attempts."""


# The most a count in an answer may be: Flickr holds ~10^10 photos; beyond this it is junk.
_MAX_COUNT = 10**12


def _count(value: Any) -> int | None:
    """A whole, non-negative count from JSON (an int or a string of ASCII digits), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        count = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        count = int(value)
    else:  # floats (1e300), "abc", "many", null, objects
        return None
    return count if 0 <= count <= _MAX_COUNT else None


def check_search_answer(photos: Any) -> dict[str, Any] | str:
    """The ``photos`` object with ``page``, ``pages`` and ``total`` as ints, or why it is bad."""
    if not isinstance(photos, dict):
        return "answer has no 'photos' object"
    out = dict(photos)
    for name, default in (("total", 0), ("pages", 1), ("page", 1)):
        raw = photos.get(name, default)
        value = _count(raw)
        if value is None:
            return f"'{name}' is {str(raw)[:40]!r}, not a whole number"
        out[name] = value
    entries = photos.get("photo", [])
    if not isinstance(entries, list) or not all(isinstance(p, dict) for p in entries):
        return "'photo' is not a list of objects"
    out["photo"] = entries
    return out


def redact(text: str, api_key: str) -> str:
    """``text`` with the key (and any ``api_key=...`` URL parameter) replaced by ``***``."""
    if api_key:
        text = text.replace(api_key, "***")
    return _KEY_IN_URL.sub(r"\1***", text)


class TokenBucket:
    """Thread-safe token bucket: at most ``capacity + rate * t`` grants in any window of t seconds.

    ``clock`` and ``sleep`` are injectable so tests can run an hour of budget in no time.
    """

    def __init__(
        self,
        calls_per_hour: float,
        *,
        capacity: int = 3,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if calls_per_hour <= 0:
            raise ValueError(f"calls_per_hour must be > 0 (Flickr: 3600), got {calls_per_hour}")
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 token, got {capacity}")
        self.rate = calls_per_hour / 3600.0  # tokens per second
        self.capacity = capacity
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._stamp = clock()

    def acquire(self) -> float:
        """Block until a token is free, take it, and return the clock time it was granted at."""
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return now
                wait = (1.0 - self._tokens) / self.rate
            self._sleep(wait)  # outside the lock, so other threads can check in meanwhile


class FlickrClient:
    """Calls the Flickr REST API with a shared rate limit and retries; safe to use from threads."""

    def __init__(
        self,
        api_key: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        calls_per_hour: float = 3600,
        timeout: float = 30,
        max_retries: int = 6,
        session: requests.Session | None = None,
        backoff_base: float = 1.0,
        backoff_max: float = 120.0,
        max_retry_after: float = 3600.0,
        bad_answer_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise FlickrAuthError(
                100, "no API key", "No Flickr API key given. Pass --api-key or set FLICKR_API_KEY."
            )
        if max_retries < 0 or bad_answer_retries < 0:
            raise ValueError(f"max_retries and bad_answer_retries must be >= 0, got "
                             f"{max_retries}, {bad_answer_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if not endpoint.startswith(("https://", "http://")):
            raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
        self._api_key = api_key.strip()
        self.endpoint = endpoint
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after  # a longer Retry-After fails instead of sleeping
        self.bad_answer_retries = bad_answer_retries
        self._shared_session = session
        self._local = threading.local()  # one Session (connection pool) per thread
        self._sleep = sleep
        self._rng = random.Random(seed)
        self.limiter = TokenBucket(calls_per_hour, clock=clock, sleep=sleep)
        self._calls_lock = threading.Lock()
        self.calls = 0  # HTTP requests sent, retries included

    def __repr__(self) -> str:  # never show the key
        return f"FlickrClient(endpoint={self.endpoint!r})"

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Call ``method`` and return the decoded JSON of a ``stat == "ok"`` answer."""
        query = {k: str(v) for k, v in params.items() if v is not None}
        query.update(method=method, api_key=self._api_key, format="json", nojsoncallback="1")
        last = "no attempt made"
        for attempt in range(self.max_retries + 1):
            if attempt:
                log.info("Flickr %s: retry %d/%d (%s)", method, attempt, self.max_retries, last)
            result = self._attempt(query)
            if isinstance(result, dict):
                return result
            last, delay = result
            if delay is not None and delay > self.max_retry_after:
                raise FlickrUnavailableError(
                    0, f"Flickr {method}: asked to wait {delay:.0f} s ({last}), more than "
                       f"max_retry_after={self.max_retry_after:.0f} s; re-run later to resume")
            if attempt < self.max_retries:
                self._sleep(delay if delay is not None else self._backoff(attempt))
        raise FlickrUnavailableError(
            0, f"Flickr {method} failed after {self.max_retries + 1} attempts; last error: {last}"
        )

    def search(self, **params: Any) -> dict[str, Any]:
        """``flickr.photos.search``; returns its checked ``photos`` object (``page``, ``pages``
        and ``total`` as ints, ``photo`` a list of dicts). A malformed answer is asked for again
        ``bad_answer_retries`` times, then raises :class:`FlickrBadAnswer`."""
        for attempt in range(self.bad_answer_retries + 1):
            checked = check_search_answer(self.call("flickr.photos.search", **params).get("photos"))
            if isinstance(checked, dict):
                return checked
            log.warning("flickr.photos.search: malformed answer (%s), attempt %d/%d", checked,
                        attempt + 1, self.bad_answer_retries + 1)
            if attempt < self.bad_answer_retries:
                self._sleep(self._backoff(attempt))
        raise FlickrBadAnswer(0, f"bad_answer: {checked}")

    def check_key(self) -> None:
        """One cheap call (``flickr.test.echo``): raises FlickrAuthError for a rejected key."""
        self.call("flickr.test.echo")

    def _attempt(self, query: Mapping[str, str]) -> dict[str, Any] | tuple[str, float | None]:
        """One HTTP request: the OK answer, or (why it failed, wait before retry or None)."""
        self.limiter.acquire()
        with self._calls_lock:
            self.calls += 1
        try:
            # Never follow a redirect: a 307/308 would POST the key to wherever it points.
            resp = self._session().post(self.endpoint, data=query, timeout=self.timeout,
                                        allow_redirects=False)
        except requests.Timeout as exc:
            return f"timeout: {self._redact(str(exc))}", None
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {self._redact(str(exc))}", None
        if resp.status_code == 429:
            wait_s = retry_after_seconds(resp.headers.get("Retry-After"))
            return "HTTP 429 Too Many Requests", wait_s
        if resp.status_code >= 500:
            return f"HTTP {resp.status_code}", None
        if 300 <= resp.status_code < 400:
            target = self._redact(resp.headers.get("Location", "nowhere"))[:200]
            raise FlickrError(resp.status_code, (
                f"HTTP {resp.status_code} from {self.endpoint}: a redirect to {target}, not "
                "followed (the API key is never sent after a redirect); if that is Flickr's "
                "API, use it as the endpoint"))
        if resp.status_code != 200:
            raise FlickrError(resp.status_code, f"HTTP {resp.status_code} from {self.endpoint}")
        try:
            body = resp.json()
        except ValueError:
            return "answer is not JSON", None
        return self._check_stat(body)

    def _check_stat(self, body: Any) -> dict[str, Any] | tuple[str, None]:
        if not isinstance(body, dict):
            return "answer is not a JSON object", None
        if body.get("stat") == "ok":
            return body
        code = int_or(body.get("code"), 0)
        message = self._redact(str(body.get("message", "unknown error")))
        if code in AUTH_CODES:
            raise FlickrAuthError(code, message)
        if code in TRANSIENT_CODES:
            return f"Flickr error {code}: {message}", None
        raise FlickrError(code, message)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, capped."""
        delay = min(self.backoff_max, self.backoff_base * 2**attempt)
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _session(self) -> requests.Session:
        if self._shared_session is not None:
            return self._shared_session
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key)
