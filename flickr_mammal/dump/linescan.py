"""Which lines of a chunk to parse, in one pass over its bytes (Hyperscan), for formats with one
record per line (JSON lines).

The per-line raw prefilter (:meth:`~flickr_mammal.dump.match.ClassMatcher.raw_hits`, RE2 over
each line) costs about 1.6 ns a byte: most of a JSON-lines scan. Hyperscan runs the same
pattern over a whole chunk at once, several times faster, and reports where matches end: the
lines holding them are the lines to parse (the RE2 filter then runs on those few only, so what
is kept is exactly what it keeps). Extra patterns name other lines to parse (a JSON line not
shaped ``{...}``). Hyperscan reads bytes, case-insensitively for ASCII only: a matcher whose
class texts are not all ASCII gets no scanner (RE2 folds their case; the per-line filter runs),
and the two non-ASCII characters that fold to ASCII letters (the Kelvin sign, long s) mark
their line as a hit wherever they occur. Optional: without the ``hyperscan`` package (wheels for
x86-64 Linux) the per-line filter runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from flickr_mammal.dump.formats.lines import view_offset

try:  # optional: x86-64 wheels only
    import hyperscan
except ImportError:  # pragma: no cover - depends on the platform
    hyperscan = None

log = logging.getLogger(__name__)

# The raw UTF-8 of the characters Unicode case-folds to an ASCII letter: K (Kelvin sign) -> k,
# long s -> s (RE2's (?i) folds them; Hyperscan's byte mode does not).
_FOLDS_TO_ASCII = r"\xE2\x84\xAA|\xC5\xBF"


def available() -> bool:
    return hyperscan is not None


class LineScanner:
    """Hyperscan database of patterns (multi-line: ``^``/``$`` at each line) and, per thread, its
    scratch space; :meth:`lines` gives the start and end of each line where one matches."""

    def __init__(self, patterns: Sequence[str]) -> None:
        if hyperscan is None:
            raise RuntimeError("LineScanner needs the hyperscan package (pip install hyperscan)")
        self.db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = hyperscan.HS_FLAG_MULTILINE | hyperscan.HS_FLAG_ALLOWEMPTY
        self.db.compile(expressions=[p.encode() for p in patterns],
                        ids=list(range(len(patterns))), elements=len(patterns),
                        flags=[flags] * len(patterns))
        self.local = threading.local()

    def _scratch(self) -> Any:
        scratch = getattr(self.local, "scratch", None)
        if scratch is None:  # one per thread: a scan writes to its scratch
            scratch = self.local.scratch = hyperscan.Scratch(self.db)
        return scratch

    def lines(self, data: bytes | memoryview) -> tuple[np.ndarray, np.ndarray]:
        """(starts, ends) of the lines of ``data`` where some pattern matches, in order; a line
        holds its newline (a match's last byte, a newline included, names its line)."""
        ends: list[int] = []
        self.db.scan(data, match_event_handler=lambda _i, _f, to, _fl, _c: ends.append(to),
                     scratch=self._scratch())
        if not ends:
            empty = np.zeros(0, np.int64)
            return empty, empty
        raw = np.frombuffer(data, np.uint8)
        last = np.unique(np.array(ends, np.int64) - 1)  # each match's last byte
        last = last[last >= 0]
        starts, stops = [], []
        find, rfind = _finders(data)
        for byte in last.tolist():
            if stops and byte < stops[-1]:
                continue  # in the line just taken
            start = rfind(b"\n", 0, byte) + 1
            stop = byte + 1 if raw[byte] == 10 else find(b"\n", byte)
            stop = len(raw) if stop < 0 else stop + (raw[byte] != 10)
            starts.append(start)
            stops.append(stop)
        return np.array(starts, np.int64), np.array(stops, np.int64)


def _finders(data: bytes | memoryview) -> tuple[Any, Any]:
    """``find``/``rfind`` over ``data`` without copying it (a view of a memory map searches
    the map, with offsets made relative to the view)."""
    if isinstance(data, memoryview) and hasattr(data.obj, "find"):
        base = view_offset(data)
        source = data.obj

        def find(sub: bytes, start: int) -> int:
            at = source.find(sub, base + start, base + len(data))
            return at - base if at >= 0 else -1

        def rfind(sub: bytes, start: int, stop: int) -> int:
            at = source.rfind(sub, base + start, base + stop)
            return at - base if at >= 0 else -1

        return find, rfind
    raw = bytes(data) if isinstance(data, memoryview) else data
    return raw.find, raw.rfind


@lru_cache(maxsize=8)
def line_scanner(raw_pattern: str, ascii_texts: bool,
                 extra: tuple[str, ...] = ()) -> LineScanner | None:
    """A scanner for a matcher's raw pattern (and ``extra`` patterns), compiled once per
    pattern set; None where it cannot stand in for RE2 (no hyperscan, texts not ASCII)."""
    if hyperscan is None or not ascii_texts:
        return None
    try:
        return LineScanner([raw_pattern, _FOLDS_TO_ASCII, *extra])
    except hyperscan.error as exc:  # a pattern Hyperscan cannot take: RE2 reads it per line
        log.warning("metadata scan: the whole-chunk scanner is off (%s); lines are filtered "
                    "one by one", exc)
        return None
