"""Atomic file writes, shared by skewtools and training (and open to flickr_mammal, which
depends on skewtools too): write a temp file beside the target, then ``os.replace`` it over the
target, so a reader or a crash never sees half a file.

The temp name is unique (``.NAME.<hex>.tmp``), so concurrent writers of one path never share a
temp file; the last replace wins. The temp file is created with mode 0o666 minus the umask, as
``open(path, "w")`` would create the target: ``tempfile.mkstemp``'s 0o600 would leave results
readable by their owner only.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def atomic_write_with(path: str | Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a fresh temp file beside ``path``, then rename it over ``path``.

    ``write`` gets a path ending in ``.tmp``: a writer that infers the format from the suffix
    (``savefig``) must be told the format. On any error the temp file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    # O_EXCL reserves the name; the mode goes through the umask like any new file's
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see the module docstring)."""
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    atomic_write_with(path, lambda tmp: tmp.write_text(text, encoding=encoding))
