"""Metadata-dump formats as a registry: one module per format in this package, each registering
a :class:`DumpFormat` (name -> reader) with :func:`register_format` when imported. Every module
of the package is imported here, so adding a format is adding one file.

A reader hands out its chunks as tasks (:meth:`DumpFormat.tasks`): made in order and cheaply
(where a chunk starts), each called in any thread to do the chunk's reading and parsing, so a
scan runs several at once, in order (:mod:`~flickr_mammal.dump.search`).

A file's format is told by its content (:meth:`DumpFormat.detect`, magic bytes; a ``fallback``
format, the YFCC100M TSV that claims any text, is tried last), or forced with
``--metadata-format NAME``. A reader turns a file into deterministic :class:`Chunk` s (so a
resumed scan meets the same ones); a malformed row or cell is counted in ``Chunk.malformed``
and skipped, never raised; a file that cannot be read at all raises
:class:`~flickr_mammal.dump.errors.DumpFileError` naming it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flickr_mammal.dump.errors import DumpFileError
from flickr_mammal.dump.formats.lines import RawFilter

HEAD_BYTES = 64  # how much of a file detection looks at
MAX_LINE_BYTES = 1 << 20  # longest accepted text line (YFCC100M's longest fields: ~500 KB)


@dataclass(frozen=True)
class Chunk:
    """One committed unit of a scan."""

    index: int                                         # chunk number in its source
    start: int                                         # resume position (bytes, row group)
    stop: int
    # Text columns (pyarrow), for the prefilter: of every row, or, where the format ran a
    # raw-text prefilter (``raw_filter``), of the rows it kept only (the others name no class).
    texts: dict[str, Any]
    rows_at: Callable[[list[int]], list[dict[str, Any]]]  # full rows of some texts' positions
    num_rows: int                                      # every row read, prefiltered or not
    malformed: int = 0                                 # rows skipped as unreadable
    hits: Any = None                                   # prefilter_hits of texts, once known


# One chunk's reading and parsing, called once, in any thread (several run at once); None
# when there was nothing left to read (a format that makes tasks before it knows where its
# data ends: only tasks after the last chunk may return None).
ChunkTask = Callable[[], "Chunk | None"]


class DumpFormat:
    """A dump format: subclass, set the attributes, implement the methods, register it."""

    name: str = ""
    description: str = ""       # for the --metadata-format help and errors ("parquet file")
    folder_glob: str = "*"      # the files of a folder this format reads ("a|b": either)
    url_encoded: bool = False   # text is URL-encoded (YFCC100M: TSV and its copies)
    fallback: bool = False      # detect claims what the others do not: tried last
    max_readers: int | None = None  # most tasks worth running at once (None: no limit)

    def detect(self, head: bytes) -> bool:
        """Is a file starting with ``head`` (HEAD_BYTES bytes) of this format?"""
        raise NotImplementedError

    def detect_path(self, path: Path, head: bytes) -> bool:
        """:meth:`detect`, for a format that must look past the head (inside a gzip stream)."""
        return self.detect(head)

    def plan(self, paths: Sequence[Path]) -> None:
        """Told the files a scan reads, in order, before it reads them: a format may read
        ahead (decompress the next files in other processes). Nothing is read here."""
        return None

    def layout(self, path: Path) -> tuple[tuple[str, ...], list[str]]:
        """(positional column names or (), the columns available to map fields to)."""
        raise NotImplementedError

    def chunks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
               text_fields: Sequence[str], chunk_bytes: int,
               done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
               ) -> Iterator[Chunk]:
        """The chunks after those in ``done`` ((index, stop) of each committed one).
        ``raw_filter`` (:meth:`~flickr_mammal.dump.match.ClassMatcher.raw_hits`), where given,
        may be run on raw text to leave out of ``Chunk.texts`` the rows that name no class.
        A format implements this or :meth:`tasks` (each has the other as its default)."""
        for task in self.tasks(path, layout, fields, text_fields, chunk_bytes, done,
                               raw_filter):
            chunk = task()
            if chunk is not None:
                yield chunk

    def tasks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
              text_fields: Sequence[str], chunk_bytes: int,
              done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
              ) -> Iterator[ChunkTask]:
        """The chunks of :meth:`chunks` as tasks, in order: making one costs little (finding
        where its chunk starts), calling it does the chunk's work, in any thread, while later
        ones run in others. Default: :meth:`chunks` one by one, as the tasks are made."""
        if type(self).chunks is DumpFormat.chunks:
            raise NotImplementedError(f"{type(self).__name__} implements neither chunks nor "
                                      "tasks")
        for chunk in self.chunks(path, layout, fields, text_fields, chunk_bytes, done,
                                 raw_filter):
            yield lambda chunk=chunk: chunk


_FORMATS: dict[str, DumpFormat] = {}


def register_format(fmt: DumpFormat) -> DumpFormat:
    if not fmt.name or fmt.name in _FORMATS or fmt.name == "auto":
        raise ValueError(f"dump format name {fmt.name!r} is empty, 'auto' or taken")
    _FORMATS[fmt.name] = fmt
    return fmt


def format_names() -> tuple[str, ...]:
    return tuple(_FORMATS)


def get_format(name: str) -> DumpFormat:
    try:
        return _FORMATS[name]
    except KeyError:
        raise ValueError(f"--metadata-format {name!r}: unknown; use auto or one of "
                         f"{', '.join(_FORMATS)}") from None


def read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError as exc:
        raise DumpFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def detect_format(path: Path) -> DumpFormat:
    """The format of ``path`` by its first bytes; DumpFileError when none claims it."""
    head = read_head(path)
    if not head:
        raise DumpFileError(f"{path} is empty; expected {_expected()}")
    for fmt in _detection_order():
        if fmt.detect_path(path, head):
            return fmt
    raise DumpFileError(f"{path} is in no known metadata format (it starts {head[:8]!r}); "
                        f"expected {_expected()}")


def check_format(path: Path, fmt: DumpFormat) -> None:
    """Raise DumpFileError unless ``path``'s content is of ``fmt`` (a forced or folder format)."""
    head = read_head(path)
    if not head:
        raise DumpFileError(f"{path} is empty; expected a {fmt.description}")
    if not fmt.detect_path(path, head):
        found = next((f for f in _detection_order() if f.detect_path(path, head)), None)
        what = f"a {found.description}" if found else f"something else ({head[:8]!r})"
        raise DumpFileError(f"{path} holds {what}; expected a {fmt.description} "
                            "(--metadata-format)")


def resume_after(done: list[tuple[int, int]], start: int) -> tuple[int, int]:
    """(index, position) of the first chunk after the committed ``done`` ((index, stop) each);
    ``start``: a source's first position."""
    return (done[-1][0] + 1, done[-1][1]) if done else (0, start)


def text_cell(value: Any) -> str | None:
    """A text field's cell from a typed source (JSON, SQLite) as text: numbers as written,
    a list (tags) joined by commas, bytes as UTF-8; ValueError for a cell no text can be (an
    object, bytes that are not UTF-8): its row is malformed."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")  # UnicodeDecodeError is a ValueError
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, list):
        return ",".join(t for t in map(text_cell, value) if t is not None)
    raise ValueError(f"a {type(value).__name__} where text belongs")


def _detection_order() -> list[DumpFormat]:
    return sorted(_FORMATS.values(), key=lambda f: f.fallback)


def _expected() -> str:
    return " or ".join(f"a {f.description}" for f in _FORMATS.values())


for _module in pkgutil.iter_modules(__path__):  # each module registers its format on import
    importlib.import_module(f"{__name__}.{_module.name}")
