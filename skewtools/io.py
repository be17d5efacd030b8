"""Atomic file writes, the one helper of skewtools, training and flickr_mammal (which depends on
skewtools): write a temp file beside the target, then ``os.replace`` it over the target, so a
reader or a crash never sees half a file.

The temp name is unique (``.NAME.<hex>.tmp``: :func:`temp_path`), so concurrent writers of one
path never share a temp file; the last replace wins. A writer killed mid-write leaves only such a
hidden file, which matches :data:`TEMP_GLOB` and which :func:`remove_temp_files` deletes (the
download stage sweeps its image folders with it before it starts). The temp file is
created with mode 0o666 minus the umask, as ``open(path, "w")`` would create the target:
``tempfile.mkstemp``'s 0o600 would leave results readable by their owner only.

Three forms: :func:`atomic_write_with` (a writer that wants a path: ``to_parquet``, ``savefig``),
:func:`atomic_write_bytes` / :func:`atomic_write_text`, and :class:`AtomicFile` (an open binary
file written piece by piece, e.g. a tar shard). ``fsync=True`` flushes the data to disk before
the rename, so that after a power loss the target is the old file or the whole new one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Final

_TEMP_PREFIX: Final = "."      # hidden, so listings and globs of the targets skip it
_TEMP_SUFFIX: Final = ".tmp"
TEMP_GLOB: Final = f"{_TEMP_PREFIX}*{_TEMP_SUFFIX}"  # matches every name temp_path gives


def temp_path(path: str | Path) -> Path:
    """A new, unique temp name beside ``path``: ``.NAME.<hex>.tmp`` (matches TEMP_GLOB)."""
    path = Path(path)
    return path.with_name(f"{_TEMP_PREFIX}{path.name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}")


def remove_temp_files(folder: str | Path, *, depth: int = 0) -> int:
    """Delete the temp files that writers killed mid-write left in ``folder`` (``depth=1``: in
    its subfolders instead; 2: theirs, ...). Returns how many.

    Call it only while nothing writes there: a live writer's temp file would go too.
    """
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    removed = 0
    for tmp in Path(folder).glob("*/" * depth + TEMP_GLOB):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed


def _open_temp(path: Path, parents: bool) -> tuple[int, Path]:
    """A new, uniquely named temp file beside ``path``, open for writing: (fd, temp path)."""
    tmp = temp_path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL  # O_EXCL: the name is ours alone
    try:
        return os.open(tmp, flags, 0o666), tmp  # the mode goes through the umask
    except FileNotFoundError:
        if not parents:
            raise
    # Created on demand: one mkdir per new folder rather than a stat per file (downloads).
    path.parent.mkdir(parents=True, exist_ok=True)
    return os.open(tmp, flags, 0o666), tmp


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_with(path: str | Path, write: Callable[[Path], object], *,
                      fsync: bool = False, parents: bool = False) -> None:
    """``write(tmp)`` to a fresh temp file beside ``path``, then rename it over ``path``.

    ``write`` gets a path ending in ``.tmp``: a writer that infers the format from the suffix
    (``savefig``) must be told the format. On any error the temp file is removed. ``parents``
    creates a missing parent folder; ``fsync`` syncs the data before the rename.
    """
    path = Path(path)
    fd, tmp = _open_temp(path, parents)
    os.close(fd)
    try:
        write(tmp)
        if fsync:
            _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, fsync: bool = False,
                       parents: bool = False) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    with AtomicFile(path, fsync=fsync, parents=parents) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    atomic_write_bytes(path, text.encode(encoding))


class AtomicFile:
    """A binary file written under a temp name beside ``path``: :meth:`commit` renames it into
    place, :meth:`abort` removes it. As a context manager it commits on success and aborts on
    an exception. ``file`` is the open file object (give it to ``tarfile.open(fileobj=...)``).
    """

    def __init__(self, path: str | Path, *, fsync: bool = False, parents: bool = False) -> None:
        self.path = Path(path)
        self._fsync = fsync
        fd, self.tmp = _open_temp(self.path, parents)
        try:
            self.file: BinaryIO = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.tmp.unlink(missing_ok=True)
            raise

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def commit(self) -> None:
        """Flush (and with ``fsync``, sync) the file, close it and rename it over ``path``."""
        try:
            self.file.flush()
            if self._fsync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Close and remove the temp file; ``path`` is left as it was."""
        self.file.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()
