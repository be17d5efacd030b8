"""Open the tar shards an index names, safely: the one way every reader opens a shard.

A shard index (a parquet file) is data, and data can be edited. A ``shard`` value is therefore
never used as a path as it stands. :func:`shard_path` accepts it only when

- it is a plain file name (no folder part, no ``..``, not absolute) made of letters, digits,
  ``.``, ``_`` and ``-``, ending in ``.tar`` (so no brace pattern or ``pipe:`` URL either);
- the path resolves (symlinks followed) to a place inside the resolved shard folder, so a
  symlink to another build's tar is refused;
- what it resolves to is a regular file (not ``/dev/zero``, a FIFO or a folder, which would
  hang a reader or never end).

:func:`open_shard` checks again on the open file (``fstat``), so a file swapped after the
check is caught too, and opens it as an **uncompressed** tar (tarfile's ``"r|"`` stream mode):
a compressed file is an error rather than something decompressed without bound.
:func:`shard_samples` groups a shard's members into WebDataset-style samples
(``{"__key__", "__url__", ext: bytes}``) without webdataset's opener, which would expand brace
patterns, run ``pipe:`` URLs and auto-detect compression.
"""

from __future__ import annotations

import os
import re
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\.tar")


class ShardPathError(ValueError):
    """A shard named by an index that no reader may open (outside the folder, not a file)."""


def shard_path(shards_dir: str | Path, name: object) -> Path:
    """The path of shard ``name`` in ``shards_dir``, once checked (see the module docstring).

    Raises :class:`ShardPathError` naming the shard and what is wrong with it.
    """
    text = str(name)
    if not _NAME.fullmatch(text):
        raise ShardPathError(f"shard {text[:80]!r}: not a plain shard file name "
                             "(letters, digits, '.', '_', '-', ending in .tar; no folders)")
    folder = Path(shards_dir).resolve()
    path = folder / text
    target = path.resolve()
    if not target.is_relative_to(folder):
        raise ShardPathError(f"shard {text}: leads outside the shard folder {folder} "
                             f"(to {target})")
    try:
        mode = target.stat().st_mode
    except OSError as exc:
        raise ShardPathError(f"shard {text}: missing from {folder} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise ShardPathError(f"shard {text}: not a regular file in {folder}")
    return target


def open_shard(path: str | Path) -> tarfile.TarFile:
    """An uncompressed tar stream over the regular file at ``path`` (close it when done)."""
    path = Path(path)
    # O_NONBLOCK: opening a FIFO put here after the check must not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ShardPathError(f"shard {path.name}: not a regular file")
        os.set_blocking(fd, True)
        handle: BinaryIO = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    try:
        # "r|": uncompressed, read front to back; "r|*" / tarfile.open's default would try
        # gzip, bz2 and xz first.
        return tarfile.open(fileobj=handle, mode="r|")
    except tarfile.TarError as exc:
        handle.close()
        raise ShardPathError(f"shard {path.name}: not an uncompressed tar ({exc})") from None


def _close(tar: tarfile.TarFile) -> None:
    tar.close()
    if tar.fileobj is not None:
        tar.fileobj.close()


def shard_samples(paths: Iterable[str | Path], select_files: Callable[[str], bool] | None = None,
                  on_shard_end: Callable[[str, int], None] | None = None,
                  ) -> Iterator[dict[str, Any]]:
    """Samples of the shards at ``paths`` (already checked by :func:`shard_path`), in order.

    Members with the same key (the name up to the first dot of its base name) that follow
    each other form one sample. ``select_files(name)`` false: the member is skipped unread.
    ``on_shard_end(url, keys)`` is called after each shard with the number of distinct keys
    it holds, selected or not (a reader can compare it with its index).
    """
    for path in paths:
        url = str(path)
        tar = open_shard(path)
        keys: set[str] = set()
        current: dict[str, Any] | None = None
        try:
            for info in tar:
                if not info.isreg():
                    continue
                head, _, base = info.name.rpartition("/")
                stem, _, ext = base.partition(".")
                key = f"{head}/{stem}" if head else stem
                keys.add(key)
                if select_files is not None and not select_files(info.name):
                    continue
                if current is None or current["__key__"] != key:
                    if current is not None:
                        yield current
                    current = {"__key__": key, "__url__": url}
                if ext in current:
                    raise ValueError(f"shard {Path(url).name}: sample {key} repeats {ext}")
                handle = tar.extractfile(info)
                current[ext] = handle.read() if handle is not None else b""
                tar.members = []     # a stream keeps no member list
        except tarfile.TarError as exc:
            raise ShardPathError(f"shard {Path(url).name}: cannot be read as a tar "
                                 f"({exc})") from None
        finally:
            _close(tar)
        if current is not None:
            yield current
        if on_shard_end is not None:
            on_shard_end(url, len(keys))
