"""A line-based dump file opened as one binary stream, whatever its compression (told by its
first bytes, never its name): plain, bz2 or gzip.

bz2 decompresses on every core through ``indexed_bzip2`` where installed (a dependency; it
finds the stream's blocks and decodes them in threads of its own: 2.1x ``bzip2 -dc`` on 2
cores), else on one through the standard library. gzip stays on the standard library
(multi-member streams included): the parallel decoder measured (``rapidgzip``) reads a
truncated file without an error, which would drop the rest of a cut download silently; zlib
releases the GIL, so a gzip stream decompresses on one core beside the parse in reader
threads. Failures become one line (:func:`reading`): a cut-short or damaged stream says so.
"""

from __future__ import annotations

import bz2
import gzip
import os
import zlib
from pathlib import Path
from typing import BinaryIO

from flickr_mammal.dump.errors import FileErrors

try:  # optional: bz2 on every core
    import indexed_bzip2
except ImportError:  # pragma: no cover - depends on the install
    indexed_bzip2 = None

GZIP_MAGIC = b"\x1f\x8b"


def is_bz2(head: bytes) -> bool:
    return head[:3] == b"BZh" and head[3:4].isdigit()


def is_gzip(head: bytes) -> bool:
    return head.startswith(GZIP_MAGIC)


def head_of(path: Path, size: int = 4) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(size)


def is_compressed(path: Path) -> bool:
    """A stream that cannot seek: read from the start (resumed by reading up to an offset)."""
    head = head_of(path)
    return is_bz2(head) or is_gzip(head)


def open_stream(path: Path) -> BinaryIO:
    """``path``'s bytes, decompressed if it is bz2 or gzip (a buffered binary reader)."""
    head = head_of(path)
    if is_bz2(head):
        if indexed_bzip2 is not None:
            return indexed_bzip2.open(str(path), parallelization=os.cpu_count() or 1)
        return bz2.open(path, "rb")
    if is_gzip(head):
        return gzip.open(path, "rb")
    return open(path, "rb")  # noqa: SIM115 - the caller closes it


def inner_head(path: Path, size: int = 64) -> bytes:
    """The first ``size`` decompressed bytes of a gzip file (b"" when it cannot be read)."""
    try:
        with gzip.open(path, "rb") as handle:
            return handle.read(size)
    except (OSError, EOFError, zlib.error):
        return b""


def stream_problem(kind: str, expected: str, exc: BaseException) -> str | None:
    """The line for a ``kind`` ("bz2" or "gzip") stream's failure (None: not one)."""
    suffix = ".bz2" if kind == "bz2" else ".gz"
    if isinstance(exc, EOFError):
        return (f"the {kind} stream ends before its end marker (a truncated download?); "
                f"expected a complete {suffix} file")
    if kind == "bz2" and isinstance(exc, RuntimeError):  # indexed_bzip2: cut short or damaged
        return ("the bz2 stream is damaged or ends before its end marker (a truncated "
                "download?); expected a complete .bz2 file")
    invalid = ((gzip.BadGzipFile, zlib.error) if kind == "gzip" else OSError)
    if isinstance(exc, invalid) and not isinstance(exc, FileNotFoundError):
        return f"not a valid {kind} stream ({exc}); expected {expected}"
    return None


def reading(path: Path, expected: str) -> FileErrors:
    """A context turning a failure of ``path``'s compressed stream into one DumpFileError
    (a plain file's errors pass through)."""
    head = head_of(path)
    kind = "bz2" if is_bz2(head) else "gzip" if is_gzip(head) else ""
    if not kind:
        return FileErrors(path, lambda _exc: None)
    return FileErrors(path, lambda exc: stream_problem(kind, expected, exc))
