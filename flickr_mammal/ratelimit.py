"""An adaptive request rate per host (AIMD), shared by the threads of one download process.

Flickr's image CDN answers 429 (and 503) when a client asks too fast. Retrying each photo on
its own burns its retries while the whole build keeps asking too fast; instead every thread of
a process paces its requests to one host through one :class:`HostRate`, which behaves like
TCP's congestion window:

* it starts unpaced (``rate`` is infinite): a server that never complains is never slowed;
* on a 429 or 503 it cuts the rate multiplicatively, to ``decrease`` x the rate it observed
  over the last second (at most once a second: the answers to requests already in flight
  say nothing new), and pauses the host for the answer's ``Retry-After`` (capped);
* each success adds ``increase / rate`` requests/s, i.e. about ``increase`` requests/s per
  second at that rate: a slow, additive recovery.

Processes do not share it: with P processes the host sees up to P x the rate shown.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

_WINDOW_S = 1.0  # the rate observed when a 429 arrives: requests started in the last second


@dataclass(frozen=True)
class RatePolicy:
    """AIMD settings (module docstring). Rates are requests per second."""

    min_rate: float = 0.5
    decrease: float = 0.5
    increase: float = 1.0
    max_pause: float = 120.0   # a Retry-After longer than this pauses the host this long

    def __post_init__(self) -> None:
        if not self.min_rate > 0:
            raise ValueError(f"RatePolicy.min_rate must be > 0 requests/s, got {self.min_rate}")
        if not 0 < self.decrease < 1:
            raise ValueError(f"RatePolicy.decrease must be in (0, 1), got {self.decrease}")
        if self.increase < 0 or self.max_pause < 0:
            raise ValueError("RatePolicy.increase and max_pause must be >= 0")


class HostRate:
    """One host's pacing: :meth:`reserve` a start, then report :meth:`success` or
    :meth:`throttled`."""

    def __init__(self, policy: RatePolicy,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self._clock = clock
        self._lock = threading.Lock()
        self.rate = math.inf
        self._next = 0.0
        self._paused_until = 0.0
        self._last_cut = -math.inf
        self._starts: deque[float] = deque()
        self.throttles = 0

    def reserve(self, honour_pause: bool = True) -> float:
        """Seconds the caller must wait before its request (0: go now).

        ``honour_pause=False``: the caller already waited out the Retry-After it received.
        """
        with self._lock:
            now = self._clock()
            start = max(now, self._next, self._paused_until if honour_pause else now)
            if self.rate != math.inf:
                self._next = start + 1.0 / self.rate
            self._starts.append(start)
            while self._starts and self._starts[0] < now - _WINDOW_S:
                self._starts.popleft()
            return start - now

    def success(self) -> None:
        with self._lock:
            if self.rate != math.inf:
                self.rate += self.policy.increase / self.rate

    def throttled(self, retry_after: float | None = None) -> None:
        """The host answered 429 / 503: slow down (and pause for its Retry-After)."""
        with self._lock:
            now = self._clock()
            self.throttles += 1
            if retry_after is not None:
                pause = min(retry_after, self.policy.max_pause)
                self._paused_until = max(self._paused_until, now + pause)
            if now - self._last_cut < _WINDOW_S:
                return
            self._last_cut = now
            observed = sum(1 for t in self._starts if t >= now - _WINDOW_S) / _WINDOW_S
            base = min(self.rate, max(observed, 1.0))
            self.rate = max(self.policy.min_rate, base * self.policy.decrease)
            self._next = max(self._next, now + 1.0 / self.rate)


def rate_text(rates: dict[str, float]) -> str:
    """``host 12.5/s`` per host for a progress bar (``max`` while unpaced)."""
    return ", ".join(f"{host} {'max' if r == math.inf else f'{r:.1f}/s'}"
                     for host, r in sorted(rates.items()))
