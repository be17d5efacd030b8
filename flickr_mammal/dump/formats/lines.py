"""A chunk's raw lines as one pyarrow array (no copy), and which of them need parsing.

The raw-text prefilter (:meth:`~flickr_mammal.dump.match.ClassMatcher.raw_hits`) runs on the
lines as they are in the file: well under 1% of YFCC100M rows name a mammal, so parsing only the
lines it keeps (and the lines whose shape it cannot vouch for) skips nearly all of the parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# indices of the raw texts (a pyarrow string array) that may name a class
RawFilter = Callable[[Any], np.ndarray]


@dataclass(frozen=True)
class RawText:
    """The scan's raw-text prefilter (a :data:`RawFilter`: call it on raw texts) and, where one
    can stand in for it, a whole-chunk scanner (:mod:`~flickr_mammal.dump.linescan`) for
    formats with one record per line, given their own patterns of lines to parse too."""

    hits: RawFilter
    scanner: Callable[[tuple[str, ...]], Any] = lambda extra: None

    def __call__(self, values: Any) -> np.ndarray:
        return self.hits(values)


def line_offsets(data: bytes | memoryview) -> np.ndarray:
    """Where each line of ``data`` starts, and its end (int64, one more than the lines): a
    line holds its newline; a last line without one is a line too."""
    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    ends = newlines + 1
    if len(data) and (not len(ends) or ends[-1] != len(data)):
        ends = np.append(ends, len(data))
    return np.concatenate(([0], ends)).astype(np.int64)


def split_lines(data: bytes | memoryview, offsets: np.ndarray | None = None) -> Any:
    """The lines of ``data`` (:func:`line_offsets`) as a pyarrow large_binary array over
    ``data`` itself (no copy)."""
    import pyarrow as pa

    offsets = line_offsets(data) if offsets is None else offsets
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def enclosed(data: bytes | memoryview, offsets: np.ndarray, first: bytes,
             last: bytes) -> np.ndarray:
    """Per line: does it start with ``first`` and end with ``last`` (before its newline, or
    CR LF)? A look at two bytes a line, indexed from the offsets (no pass over the bytes)."""
    raw = np.frombuffer(data, np.uint8)
    starts, stop = offsets[:-1], offsets[1:] - 1
    if not len(starts):
        return np.zeros(0, bool)
    for ending in (10, 13):  # the newline, then a CR before it
        stop = stop - ((stop >= starts) & (raw[np.maximum(stop, 0)] == ending))
    ok = stop > starts  # two characters at least
    ok &= raw[np.minimum(starts, len(raw) - 1)] == first[0]
    return ok & (raw[np.maximum(stop, 0)] == last[0])


def lines_to_parse(lines: Any, simple: Any, raw_filter: RawFilter) -> np.ndarray | None:
    """Indices of the ``lines`` to parse: those ``raw_filter`` keeps and those not ``simple``
    (per line, a boolean: of the shape a line naming no class may be counted from unparsed);
    None when the lines are not all UTF-8 (every line is parsed, each bad one counted)."""
    import pyarrow as pa

    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        return None
    return np.union1d(raw_filter(text), np.flatnonzero(~simple)).astype(np.int64)


def scanned_lines(data: bytes | memoryview,
                  scanner: Any) -> tuple[bytes, np.ndarray] | None:
    """(the lines a whole-chunk scanner (:mod:`~flickr_mammal.dump.linescan`) finds in
    ``data``, joined, and their offsets as :func:`line_offsets` gives them); None when
    ``data`` is not UTF-8."""
    import pyarrow as pa

    whole = pa.Array.from_buffers(pa.large_binary(), 1, [
        None, pa.py_buffer(np.array([0, len(data)], np.int64)), pa.py_buffer(data)])
    try:
        whole.cast(pa.large_string())  # checks UTF-8 (no copy)
    except pa.ArrowInvalid:
        return None
    starts, stops = scanner.lines(data)
    offsets = np.concatenate(([0], np.cumsum(stops - starts))).astype(np.int64)
    found = b"".join(bytes(data[a:b]) for a, b in zip(starts.tolist(), stops.tolist(),
                                                         strict=True))
    return found, offsets


# Bytes compared at a time when counting newlines: a mask that stays in the cache, not one the
# size of the chunk (measured 2-20x faster on a 64 MB chunk).
_COUNT_BLOCK = 1 << 20


def count_lines(data: bytes | memoryview) -> int:
    """How many lines ``data`` holds (as :func:`line_offsets` counts them)."""
    raw = np.frombuffer(data, np.uint8)
    newlines = sum(int(np.count_nonzero(raw[k:k + _COUNT_BLOCK] == 10))
                   for k in range(0, len(raw), _COUNT_BLOCK))
    return newlines + int(len(raw) > 0 and raw[-1] != 10)


def view_offset(view: memoryview) -> int:
    """Where ``view`` starts in the buffer it is a view of (``view.obj``)."""
    parent = np.frombuffer(view.obj, np.uint8)
    child = np.frombuffer(view, np.uint8)
    return child.__array_interface__["data"][0] - parent.__array_interface__["data"][0]
