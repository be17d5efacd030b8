"""Small torch-free helpers shared by the build stages."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], n: int) -> Iterator[tuple[T, ...]]:
    """``itertools.batched`` (Python 3.12+) for 3.11: tuples of up to ``n`` items."""
    it = iter(items)
    while chunk := tuple(islice(it, n)):
        yield chunk
