"""Decompress a folder's gzip files in other threads, ahead of the scan, in scan order.

A gzip stream decompresses on one core. With a folder of many gzip files (the ``yfcc100m`` tool
writes 4,096), the files after the one being parsed are decompressed meanwhile by a thread pool
(one thread per CPU, at most :data:`MAX_WORKERS`: decompression is about 80% of the scan's CPU),
``workers + 1`` files ahead; results are taken in plan
order, so chunks and their resume positions are the streamed reader's. Threads, not
processes: zlib releases the GIL while it inflates, and the bytes need no copy between
processes (a process pool measures 3x slower than no read-ahead at all on 2 busy CPUs, its
time going into pickling the decompressed bytes and starting the processes). A file that
decompresses to more than :data:`LIMIT_BYTES` (a very large file, a gzip bomb) is streamed by
the scan instead, so memory stays bounded whatever the input.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from flickr_mammal.dump.errors import DumpFileError
from flickr_mammal.dump.formats.streams import head_of, is_gzip, stream_problem

log = logging.getLogger(__name__)
LIMIT_BYTES = 256 << 20  # most decompressed bytes a file held in memory whole
MAX_WORKERS = 8
JSONL_EXPECTED = "JSON lines, plain or .gz"


def gzip_error(exc: BaseException) -> str:
    """The one-line reason a gzip file of JSON lines cannot be read."""
    return (stream_problem("gzip", JSONL_EXPECTED, exc)
            or f"cannot be read ({exc}); expected {JSONL_EXPECTED}")


def inflate(path: str, limit: int) -> tuple[str, bytes | str | None]:
    """(``ok``, the bytes) | (``big``, None) past ``limit`` | (``error``, reason), for a
    worker thread."""
    try:
        if os.path.getsize(path) > limit:
            return "big", None
        with open(path, "rb") as handle:
            data = _members(handle.read(), limit)
    except (OSError, EOFError, zlib.error) as exc:
        return "error", gzip_error(exc)
    return ("big", None) if data is None else ("ok", data)


def _members(raw: bytes, limit: int) -> bytes | None:
    """The gzip members of ``raw`` decompressed one after the other in zlib (the ``yfcc100m``
    tool appends one per batch; gzip.GzipFile, a Python loop, measured slower); None when
    more than ``limit`` bytes come out."""
    out, size = [], 0
    while raw:
        stream = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer
        piece = stream.decompress(raw, limit + 1 - size)
        size += len(piece)
        out.append(piece)
        if size > limit:
            return None
        if not stream.eof:
            raise EOFError("the gzip stream ends before its end marker")
        raw = stream.unused_data
        if not raw.strip(b"\0"):  # zero padding after the last member, as gzip(1) allows
            break
    return b"".join(out)


class ReadAhead:
    """The planned gzip files, decompressed ``depth`` files ahead by ``workers`` threads."""

    def __init__(self, paths: Sequence[Path], workers: int, limit: int = LIMIT_BYTES) -> None:
        self.paths = [Path(p) for p in paths]
        self.order = {p: i for i, p in enumerate(self.paths)}
        self.workers, self.limit, self.depth = workers, limit, workers + 1
        self.pool: ThreadPoolExecutor | None = None
        self.pending: dict[int, Future] = {}
        self.submitted = 0  # files up to here are (or were) in the pool

    @classmethod
    def for_files(cls, paths: Sequence[Path]) -> ReadAhead | None:
        """A ReadAhead when there are two gzip files or more and two CPUs or more, else None:
        one thread per CPU (decompression is most of the scan's CPU: with one per CPU but one,
        the scan measured 13% slower on 2 CPUs)."""
        gz = [p for p in paths if is_gzip(head_of(p))]
        cpus = os.cpu_count() or 1
        if len(gz) < 2 or cpus < 2:
            return None
        return cls(gz, min(cpus, MAX_WORKERS), LIMIT_BYTES)

    def _start(self, upto: int) -> None:
        if self.pool is None:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="gunzip")
        while self.submitted < min(upto, len(self.paths)):
            path = str(self.paths[self.submitted])
            self.pending[self.submitted] = self.pool.submit(inflate, path, self.limit)
            self.submitted += 1

    def take(self, path: Path) -> bytes | None:
        """The decompressed bytes of ``path``; None when it is not planned or too large (the
        caller streams it). Raises DumpFileError for a file that is no valid gzip stream."""
        index = self.order.get(Path(path))
        if index is None:
            return None
        for skipped in [i for i in self.pending if i < index]:  # files a resumed scan skips
            self.pending.pop(skipped).cancel()
        self.submitted = max(self.submitted, index)
        if index not in self.pending:
            self.submitted = index
        self._start(index + self.depth)
        kind, value = self.pending.pop(index).result()
        if index == len(self.paths) - 1:
            self.close()
        if kind == "error":
            raise DumpFileError(f"{path}: {value}")
        if kind == "big":
            log.info("%s decompresses to over %d MB: streamed", path, self.limit >> 20)
            return None
        return value if isinstance(value, bytes) else None

    def close(self) -> None:
        for future in self.pending.values():
            future.cancel()
        self.pending.clear()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None
