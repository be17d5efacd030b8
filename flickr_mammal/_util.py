"""Small torch-free helpers shared by the build stages."""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from email.utils import parsedate_to_datetime
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], n: int) -> Iterator[tuple[T, ...]]:
    """``itertools.batched`` (Python 3.12+) for 3.11: tuples of up to ``n`` items."""
    it = iter(items)
    while chunk := tuple(islice(it, n)):
        yield chunk


def replace_via_temp(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to ``.NAME.tmp`` beside ``path``, then rename it over ``path``: a reader or
    a crash never sees half a file. One fixed temp name, so only for single writers (a build
    holds its folder's lock); concurrent writers use download.write_atomic's unique names."""
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def open_temp_beside(path: Path) -> tuple[int, Path]:
    """A new, uniquely named ``.NAME.<hex>.tmp`` beside ``path``, open for writing: (fd, path).

    Created with mode 0666 filtered by the umask, like any file ``open()`` creates, so the file
    renamed into place is readable by others under the usual umask 022 (``tempfile.mkstemp``
    would leave it 0600: a shared dataset others cannot read).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp


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
