"""A chunk's raw lines as one pyarrow array (no copy), and which of them need parsing.

The raw-text prefilter (:meth:`~flickr_mammal.dump.match.ClassMatcher.raw_hits`) runs on the
lines as they are in the file: well under 1% of YFCC100M rows name a mammal, so parsing only the
lines it keeps (and the lines whose shape it cannot vouch for) skips nearly all of the parsing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# indices of the raw texts (a pyarrow string array) that may name a class
RawFilter = Callable[[Any], np.ndarray]


def split_lines(data: bytes | memoryview) -> Any:
    """The lines of ``data`` (each with its newline; a last line without one too) as a pyarrow
    large_binary array over ``data`` itself: offsets from one vectorised newline search."""
    import pyarrow as pa

    newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
    ends = newlines + 1
    if not len(ends) or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    if len(data) == 0:
        offsets = np.zeros(1, np.int64)
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def lines_to_parse(lines: Any, simple: Any, raw_filter: RawFilter) -> np.ndarray | None:
    """Indices of the ``lines`` to parse: those ``raw_filter`` keeps and those not ``simple``
    (a boolean pyarrow array: the shape a line naming no class may be counted from unparsed);
    None when the lines are not all UTF-8 (every line is parsed, each bad one counted)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        text = lines.cast(pa.large_string())
    except pa.ArrowInvalid:
        return None
    odd = pc.indices_nonzero(pc.invert(simple)).to_numpy(zero_copy_only=False)
    return np.union1d(raw_filter(text), odd)
