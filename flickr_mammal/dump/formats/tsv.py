"""The YFCC100M TSV format (plain, bz2- or gzip-compressed, told apart by content).

YFCC100M (Thomee et al. 2016) ships one tab-separated line per photo or video, no header, no
quoting, text URL-encoded. The full release has 25 columns (below); the first Webscope release
had 23 (no line number, no hash). The layout is told apart by the first line's column count.

Chunks are deterministic, so a resumed scan meets the same ones: a chunk is the bytes from its
start offset up to the last newline within ``chunk_bytes`` (a longer line is taken whole, up to
:data:`MAX_LINE_BYTES`; a line longer than that is skipped as one malformed row, read through
in bounded pieces, so a bz2 bomb of zeros never sits in memory). Plain files are memory-mapped
(chunks are views, never copied) and resume at the next chunk's offset; bz2 and gzip streams
(:mod:`~flickr_mammal.dump.formats.streams`: bz2 on every core) cannot seek and are
decompressed (not parsed) up to it. A line that is not UTF-8 is a malformed row.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from flickr_mammal.dump.errors import DumpColumnError, DumpFileError, FileErrors
from flickr_mammal.dump.formats import (
    MAX_LINE_BYTES,
    Chunk,
    ChunkTask,
    DumpFormat,
    register_format,
    resume_after,
)
from flickr_mammal.dump.formats.lines import RawFilter, view_offset
from flickr_mammal.dump.formats.streams import (
    inner_head,
    is_bz2,
    is_compressed,
    is_gzip,
    open_stream,
    reading,
)

YFCC_COLUMNS: tuple[str, ...] = (
    "line", "photoid", "hash", "uid", "unickname", "datetaken", "dateuploaded", "capturedevice",
    "title", "description", "usertags", "machinetags", "longitude", "latitude", "accuracy",
    "pageurl", "downloadurl", "licensename", "licenseurl", "serverid", "farmid", "secret",
    "secretoriginal", "ext", "marker",
)
YFCC_COLUMNS_23 = tuple(c for c in YFCC_COLUMNS if c not in ("line", "hash"))
# Bytes a text file never holds: NUL and the control characters other than tab, LF, CR, FF.
_BINARY = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


@dataclass(frozen=True)
class SkippedLine:
    """A line longer than MAX_LINE_BYTES, in place of a chunk's bytes: ``len`` is its size, so
    offsets advance past it as past any chunk."""

    size: int

    def __len__(self) -> int:
        return self.size

    def chunk(self, index: int, offset: int, texts: Mapping[str, str]) -> Chunk:
        """The chunk in its place: no rows, one malformed."""
        import pyarrow as pa

        empty = {f: pa.array([], pa.string()) for f in texts}
        return Chunk(index, offset, offset + self.size, empty, lambda _: [], 0, 1)


_EXPECTED = "a YFCC100M TSV, plain, .bz2 or .gz"


def _reading(path: Path) -> FileErrors:
    return reading(path, _EXPECTED)


def tsv_layout(path: Path) -> tuple[str, ...]:
    """The YFCC100M column names of ``path`` (25 or 23 columns, told by the first line)."""
    with _reading(path), open_stream(path) as handle:
        first = handle.readline(MAX_LINE_BYTES + 1)
    if not first.strip():
        raise DumpFileError(f"{path} holds no data (its first line is empty); expected YFCC100M "
                            "TSV lines")
    if len(first) > MAX_LINE_BYTES and not first.endswith(b"\n"):
        raise DumpFileError(f"{path}: line 1 is longer than {MAX_LINE_BYTES >> 20} MB; expected "
                            "YFCC100M TSV lines")
    n = first.count(b"\t") + 1
    for layout in (YFCC_COLUMNS, YFCC_COLUMNS_23):
        if n == len(layout):
            return layout
    raise DumpColumnError(f"{path}: line 1 has {n} tab-separated columns; the YFCC100M layout "
                          "has 25 (or 23 in the first release); for another layout use "
                          "--metadata-format parquet")


def _skip_line(handle: BinaryIO, size: int) -> int:
    """Read through the rest of an over-long line in bounded pieces; its total size."""
    while True:
        piece = handle.readline(MAX_LINE_BYTES)
        size += len(piece)
        if not piece or piece.endswith(b"\n"):
            return size


def tsv_chunks(path: Path, chunk_bytes: int,
               start: int = 0) -> Iterator[tuple[int, bytes | SkippedLine]]:
    """``(start offset, bytes)`` of each chunk from ``start`` on (whole lines only).

    A plain file is read at each chunk's offset (no copying of 64 MB blocks to join or cut
    them: the partial last line is simply read again with the next chunk); a .bz2 stream,
    which cannot seek, carries that line over."""
    compressed = is_compressed(path)
    with _reading(path), open_stream(path) as handle:
        yield from line_chunks(handle, compressed, chunk_bytes, start)


def line_chunks(handle: Any, compressed: bool, chunk_bytes: int,
                start: int) -> Iterator[tuple[int, bytes | memoryview | SkippedLine]]:
    """The chunks of :func:`tsv_chunks` from an open binary ``handle`` (``compressed``: a
    stream that cannot seek, decompressed up to ``start``); any line-based format uses it."""
    if compressed:
        skip = start
        while skip > 0:
            got = len(handle.read(min(skip, 1 << 24)))
            if not got:
                return
            skip -= got
    carry, offset = b"", start
    while True:
        if compressed:
            data = handle.read(chunk_bytes - len(carry))
            data = carry + data if carry else data
            cut = data.rfind(b"\n") + 1
            if cut:  # the chunk is a view of what was read (no copy to cut it)
                carry = data[cut:]
                yield offset, memoryview(data)[:cut]
                offset += cut
                continue
        else:
            handle.seek(offset)
            data = handle.read(chunk_bytes)
        if not data:
            return
        cut = data.rfind(b"\n") + 1
        if not cut:  # one line fills the chunk: take it whole up to MAX_LINE_BYTES
            if len(data) <= MAX_LINE_BYTES:
                data += handle.readline(MAX_LINE_BYTES + 1 - len(data))
            if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
                size = _skip_line(handle, len(data))
                carry = b""
                yield offset, SkippedLine(size)
                offset += size
                continue
            cut = len(data)
        carry = data[cut:] if compressed else b""
        yield offset, data[:cut] if cut < len(data) else data
        offset += cut


def tsv_spans(path: Path, chunk_bytes: int,
              start: int = 0) -> Iterator[tuple[int, memoryview | SkippedLine]]:
    """The chunks of :func:`tsv_chunks` for a plain (uncompressed) file, as zero-copy views of
    a memory map: the same boundaries (so a scan resumes either way), without copying each
    chunk twice (read, then cut at its last newline)."""
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if start >= size:
            return
        mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    if hasattr(mapped, "madvise"):
        mapped.madvise(mmap.MADV_SEQUENTIAL)
    yield from buffer_spans(mapped, chunk_bytes, start)


def buffer_spans(buffer: Any, chunk_bytes: int,
                 start: int = 0) -> Iterator[tuple[int, memoryview | SkippedLine]]:
    """:func:`tsv_spans` over any buffer with ``find``/``rfind`` (a memory map, or bytes
    decompressed whole): zero-copy views with the streamed chunker's boundaries."""
    size = len(buffer)
    view = memoryview(buffer)
    offset = start
    while offset < size:
        cut = buffer.rfind(b"\n", offset, min(size, offset + chunk_bytes)) + 1
        if not cut:  # a line longer than chunk_bytes (or the unterminated tail): whole
            newline = buffer.find(b"\n", offset + chunk_bytes)
            cut = size if newline < 0 else newline + 1
            if cut - offset - (newline >= 0) > MAX_LINE_BYTES:  # the line's text, no newline
                yield offset, SkippedLine(cut - offset)
                offset = cut
                continue
        yield offset, view[offset:cut]
        offset = cut


def parse_tsv(data: bytes | memoryview, layout: Sequence[str],
              columns: Sequence[str]) -> tuple[Any, int]:
    """A pyarrow Table (string columns) of the wanted ``columns`` and the malformed-row count."""
    table, malformed, _ = parse_chunk(data, layout, columns)
    return table, malformed


def parse_chunk(data: bytes | memoryview, layout: Sequence[str],
                columns: Sequence[str]) -> tuple[Any, int, bytes | memoryview]:
    """:func:`parse_tsv`, and the bytes parsed: ``data`` itself, or when some line is not
    UTF-8 (pyarrow refuses the whole block), a copy without such lines, each a malformed row."""
    import pyarrow as pa

    try:
        return (*_parse(data, layout, columns), data)
    except pa.ArrowInvalid as exc:
        if "UTF8" not in str(exc):
            raise
    kept, dropped = [], 0
    for line in bytes(data).splitlines(keepends=True):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            dropped += 1
            continue
        kept.append(line)
    clean = b"".join(kept)
    table, malformed = _parse(clean, layout, columns)
    return table, malformed + dropped, clean


def _parse(data: bytes | memoryview, layout: Sequence[str],
           columns: Sequence[str]) -> tuple[Any, int]:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    bad: list[int] = []

    def skip(row: Any) -> str:
        bad.append(1)
        return "skip"

    parse = pcsv.ParseOptions(delimiter="\t", quote_char=False, double_quote=False,
                              escape_char=False, invalid_row_handler=skip)
    convert = pcsv.ConvertOptions(column_types={c: pa.string() for c in columns},
                                  include_columns=list(columns), strings_can_be_null=False,
                                  quoted_strings_can_be_null=False)
    block = 1 << 24  # 16 MB: fewer blocks to stitch (same CPU as 4 MB, less wall time measured)
    while True:
        try:
            read = pcsv.ReadOptions(column_names=list(layout), block_size=block)
            table = pcsv.read_csv(pa.py_buffer(data), read_options=read, parse_options=parse,
                                  convert_options=convert)
            return table, len(bad)
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block >= len(data):
                raise
            bad.clear()
            block = len(data) + 1  # a row longer than a block: parse the chunk as one block


def tsv_rows(data: bytes | memoryview, layout: Sequence[str], fields: Mapping[str, str],
             table: Any, indices: Sequence[int]) -> list[dict[str, Any]]:
    """Full rows (field -> value) of some rows of a chunk parsed with only a few columns:
    each row's line is found again in the chunk's bytes by its photo id (rows are in file
    order, so one forward pass; measured cheaper than parsing the 12 other columns of every
    row). A row whose id is not a digit string keeps its parsed columns only (the scan drops
    it as ``bad_id`` anyway). ``data`` may be a view of a memory map (:func:`tsv_spans`) or of
    a decompressed chunk's buffer: the buffer itself is searched, nothing is copied."""
    source, base = (data.obj, view_offset(data)) if isinstance(data, memoryview) else (data, 0)
    stop = base + len(data)
    picked = table.take(list(indices))
    id_column = layout.index(fields["photo_id"])
    where = {f: layout.index(c) for f, c in fields.items()}
    out, pos = [], base
    for k, value in enumerate(picked[fields["photo_id"]].to_pylist()):
        pid, row = str(value or ""), None
        hit = source.find(pid.encode(), pos, stop) if pid.isdigit() else -1
        while hit >= 0:
            start = source.rfind(b"\n", base, hit) + 1 or base
            end = source.find(b"\n", hit, stop)
            end = stop if end < 0 else end
            parts = source[start:end].decode("utf-8", "replace").split("\t")
            if len(parts) == len(layout) and parts[id_column] == pid:
                row = {f: parts[i] for f, i in where.items()}
                pos = end
                break
            hit = source.find(pid.encode(), hit + 1, stop)
        if row is None:  # not found again: the parsed columns only
            row = {f: picked[c][k].as_py() for f, c in fields.items()
                   if c in picked.column_names}
        out.append(row)
    return out


class YfccTsv(DumpFormat):
    name = "yfcc100m"
    description = "YFCC100M TSV file (plain, .bz2 or .gz)"
    url_encoded = True
    fallback = True  # any text is taken for TSV once the other formats have declined it

    def detect(self, head: bytes) -> bool:
        return is_bz2(head) or not any(b in _BINARY for b in head)

    def detect_path(self, path: Path, head: bytes) -> bool:
        if is_gzip(head):  # text inside (JSON lines, detected first, claim theirs)
            inner = inner_head(path)
            return bool(inner) and not any(b in _BINARY for b in inner)
        return self.detect(head)

    def layout(self, path: Path) -> tuple[tuple[str, ...], list[str]]:
        layout = tsv_layout(path)
        return layout, list(layout)

    def tasks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
              text_fields: Sequence[str], chunk_bytes: int,
              done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
              ) -> Iterator[ChunkTask]:
        index, start = resume_after(done, 0)
        texts = {f: fields[f] for f in text_fields if f in fields}
        # Plain files are memory-mapped (no copy); .bz2 and .gz streams are decompressed into
        # bytes here, as the tasks are made (one stream), and parsed in the tasks.
        spans = tsv_chunks if is_compressed(path) else tsv_spans
        # Parse only the text and id columns (about twice as fast as all of them); the few rows
        # the prefilter keeps are split in full from the chunk's bytes.
        columns = sorted({*texts.values(), fields["photo_id"]})
        for offset, data in spans(path, chunk_bytes, start):
            yield partial(_tsv_chunk, index, offset, data, layout, fields, texts, columns)
            index += 1


def _tsv_chunk(index: int, offset: int, data: memoryview | bytes | SkippedLine,
               layout: Sequence[str], fields: dict[str, str], texts: dict[str, str],
               columns: list[str]) -> Chunk:
    if isinstance(data, SkippedLine):
        return data.chunk(index, offset, texts)
    table, malformed, parsed = parse_chunk(data, layout, columns)
    rows = partial(tsv_rows, parsed, layout, fields, table)
    return Chunk(index, offset, offset + len(data), {f: table[c] for f, c in texts.items()},
                 rows, table.num_rows, malformed)


register_format(YfccTsv())
