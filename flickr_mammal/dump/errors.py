"""The one-line errors of the dump stage (the command line prints them and exits 2)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class DumpColumnError(ValueError):
    """The dump lacks a column the scan needs (the message names it and how to map it)."""


class DumpScanMismatch(ValueError):
    """The output folder holds a scan made with other options (flickr_mammal.dump.search)."""


class DumpFileError(ValueError):
    """A whole dump file cannot be read as its format: empty, cut short, another format. The
    message names the file and what was expected."""


class FileErrors:
    """A context that turns a stream's failures into one :class:`DumpFileError` naming the file:
    ``explain`` gives the line for the failures it knows (``None`` lets the others through)."""

    def __init__(self, path: Path, explain: Callable[[BaseException], str | None]) -> None:
        self.path = path
        self.explain = explain

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        line = None if exc is None else self.explain(exc)
        if line is not None:
            raise DumpFileError(f"{self.path}: {line}") from None
        return False
