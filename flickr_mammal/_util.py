"""Small torch-free helpers shared by the build stages."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from itertools import islice
from typing import Any, TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], n: int) -> Iterator[tuple[T, ...]]:
    """``itertools.batched`` (Python 3.12+) for 3.11: tuples of up to ``n`` items."""
    it = iter(items)
    while chunk := tuple(islice(it, n)):
        yield chunk


def int_or(value: Any, default: int) -> int:
    """``int(value)``, or ``default`` when the value is missing or not a number (API fields)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds (fractions tolerated) or an
    HTTP date; never negative; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:  # float() also reads "inf" and "nan": no wait a caller could sleep on
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
