"""JSON-lines metadata (copies of YFCC100M): one object per line, plain or gzip-compressed,
one file or a folder of them.

The ``yfcc100m`` tool converts the AWS SQLite copy into 4,096 gzip files (``000.gz``, ...; each
many gzip members, appended in batches) of JSON lines keyed by the 23 YFCC100M column names (plus
its ``key``); Hugging Face re-publications ship a ``metadata.jsonl`` with the same keys plus
their own. Keys are found by the YFCC100M names (others: ``--metadata-columns``); other keys
are ignored. Text keeps YFCC100M's URL-encoding (decoded for matching, as for the TSV); a value
may be a JSON number or a string (ids, dates, coordinates), a text field a number or a list.

Chunks are the TSV's (:func:`~flickr_mammal.dump.formats.tsv.line_chunks`): whole lines up to
``chunk_bytes``, resumed at their offset in the decompressed bytes. Plain files are
memory-mapped; a gzip file is streamed, or, in a folder of several, decompressed whole by
:class:`~flickr_mammal.dump.formats.readahead.ReadAhead` in other threads, the next files
while this one is parsed (same boundaries either way). Given the scan's raw-text prefilter,
only the lines it keeps (and those not shaped ``{...}``) are parsed: a line shaped ``{...}``
that names no class is counted as a row unparsed (:func:`parse_prefiltered`); where Hyperscan
is available, one pass over the chunk finds those lines (:mod:`~flickr_mammal.dump.linescan`)
and the prefilter runs on them only. Those few lines are parsed in full with
:func:`json.loads`; without a prefilter, pyarrow.json parses the text fields. A chunk pyarrow
refuses (a line that is no JSON object, a number or list where text belongs) is parsed
line by line in Python instead: a line that cannot be read is one malformed row.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from flickr_mammal.dump.errors import DumpFileError, FileErrors
from flickr_mammal.dump.formats import (
    MAX_LINE_BYTES,
    Chunk,
    ChunkTask,
    DumpFormat,
    register_format,
    resume_after,
    text_cell,
)
from flickr_mammal.dump.formats.lines import (
    RawFilter,
    RawText,
    count_lines,
    enclosed,
    line_offsets,
    lines_to_parse,
    scanned_lines,
    split_lines,
)
from flickr_mammal.dump.formats.readahead import JSONL_EXPECTED, ReadAhead
from flickr_mammal.dump.formats.streams import inner_head, is_gzip, open_stream, reading
from flickr_mammal.dump.formats.tsv import SkippedLine, buffer_spans, line_chunks, tsv_spans

_BOM = b"\xef\xbb\xbf"
_BLOCK = 1 << 20  # pyarrow.json block: 1 MB measured faster than 16 MB (cache)


def _looks_like_json(head: bytes) -> bool:
    return head.removeprefix(_BOM).lstrip(b" \t\r\n").startswith(b"{")


def _reading(path: Path) -> FileErrors:
    return reading(path, JSONL_EXPECTED)


def jsonl_keys(path: Path) -> list[str]:
    """The keys of the first object of ``path`` (the columns fields are mapped to)."""
    number, line = 0, b"\n"
    with _reading(path), open_stream(path) as handle:
        while line and not line.strip() and number < 1000:  # leading blank lines: no rows
            line, number = handle.readline(MAX_LINE_BYTES + 1), number + 1
    if not line.strip():
        raise DumpFileError(f"{path} holds no data (no line with a JSON object); expected "
                            "JSON lines")
    try:
        first = json.loads(line)
    except ValueError:
        first = None
    if not isinstance(first, dict):
        raise DumpFileError(f"{path}: line {number} is not a JSON object (it starts "
                            f"{line[:20]!r}); expected one object per line")
    return list(first)


@dataclass(frozen=True)
class Parsed:
    """One chunk's text columns, row count, malformed lines, and its full rows on demand."""

    texts: dict[str, Any]
    num_rows: int
    malformed: int
    rows_at: Callable[[list[int]], list[dict[str, Any]]]


def parse_lines(data: bytes | memoryview, texts: dict[str, str],
                fields: dict[str, str]) -> Parsed:
    """Parse a chunk of JSON lines: ``texts`` field -> key of the text fields (pyarrow string
    arrays), ``fields`` field -> key of the rows given by ``rows_at``."""
    import pyarrow as pa

    try:
        table = _read_json(data, sorted(set(texts.values())))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _parse_python(data, texts, fields)
    columns = {f: table[c].combine_chunks() for f, c in texts.items()}
    return Parsed(columns, table.num_rows, 0,
                  _LineRows(data, table.num_rows, fields).rows_at)


# Lines a JSON-lines scan parses whatever they say: those not shaped {...} (no "{" first, or
# no "}" last before the newline and one CR), as :func:`enclosed` tells them, for a scanner.
ODD_LINES = (r"^[^{]", r"[^}\r]$", r"[^}]\r$")


def parse_prefiltered(data: bytes | memoryview, texts: dict[str, str], fields: dict[str, str],
                      raw_filter: RawFilter) -> Parsed:
    """:func:`parse_lines` of the lines ``raw_filter`` keeps (and of those not shaped
    ``{...}``: blank, truncated, an array); every other line is counted as a row unparsed.
    The positions of ``texts`` and ``rows_at`` are those of the parsed lines. Where the
    filter has a whole-chunk scanner (:class:`RawText`), the filter and the shape check run on
    the lines it finds only: the same lines are parsed, without a pass per line."""
    import pyarrow as pa

    scanner = raw_filter.scanner(ODD_LINES) if isinstance(raw_filter, RawText) else None
    if scanner is not None:
        found = scanned_lines(data, scanner)
        if found is None:  # some line is not UTF-8: each line parsed, each bad one counted
            return parse_lines(data, texts, fields)
        found_data, offsets = found
        num_lines = count_lines(data)
        lines = split_lines(found_data, offsets)
        picked = lines_to_parse(lines, enclosed(found_data, offsets, b"{", b"}"), raw_filter)
    else:
        offsets = line_offsets(data)
        lines = split_lines(data, offsets)
        num_lines = len(lines)
        picked = lines_to_parse(lines, enclosed(data, offsets, b"{", b"}"), raw_filter)
    if picked is None:  # some line is not UTF-8: each line parsed, each bad one counted
        return parse_lines(data, texts, fields)
    if not len(picked):
        return Parsed({f: pa.array([], pa.string()) for f in texts}, num_lines, 0,
                      lambda _: [])
    # json.loads, not pyarrow.json: nearly every line kept is a hit whose row is needed
    # whole, and pyarrow.json's start-up (1-4 ms a call) outweighs a few hundred lines.
    parsed = _parse_python(b"".join(lines.take(picked).to_pylist()), texts, fields)
    return Parsed(parsed.texts, parsed.num_rows + num_lines - len(picked), parsed.malformed,
                  parsed.rows_at)


def _read_json(data: bytes | memoryview, keys: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.json as pj

    schema = pa.schema([(k, pa.string()) for k in keys])
    parse = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
    block = _BLOCK
    while True:
        try:
            return pj.read_json(pa.py_buffer(data), parse_options=parse,
                                read_options=pj.ReadOptions(block_size=block))
        except pa.ArrowInvalid as exc:
            if "straddl" not in str(exc) or block > len(data):
                raise
            block = len(data) + 1  # an object longer than a block: the chunk as one block


class _LineRows:
    """Full rows of some rows of a chunk pyarrow parsed: pyarrow skips blank lines, so row k
    is the k-th line holding anything but whitespace; the line bounds are found once, when
    the first rows are asked for (nearly every chunk has a hit or two)."""

    def __init__(self, data: bytes | memoryview, num_rows: int, fields: dict[str, str]) -> None:
        self.data, self.num_rows, self.fields = data, num_rows, fields
        self.bounds: tuple[np.ndarray, np.ndarray] | None = None

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        data = self.data
        newlines = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        keep = ends > starts
        starts, ends = starts[keep], ends[keep]
        if len(starts) != self.num_rows:  # whitespace-only lines: judged one by one (rare)
            raw = bytes(data)
            pairs = [(s, e) for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
                     if raw[s:e].strip()]
            starts = np.array([s for s, _ in pairs], np.int64)
            ends = np.array([e for _, e in pairs], np.int64)
        return starts, ends

    def rows_at(self, indices: list[int]) -> list[dict[str, Any]]:
        if self.bounds is None:
            self.bounds = self._bounds()
        starts, ends = self.bounds
        out = []
        for i in indices:
            value = json.loads(bytes(self.data[starts[i]:ends[i]]))
            out.append({f: value.get(c) for f, c in self.fields.items()})
        return out


def _parse_python(data: bytes | memoryview, texts: dict[str, str],
                  fields: dict[str, str]) -> Parsed:
    """Line by line: a line that is no JSON object, or whose text field cannot be text, is
    one malformed row; numbers and lists in text fields become text."""
    import pyarrow as pa

    keys = sorted(set(texts.values()))
    values: dict[str, list[str | None]] = {k: [] for k in keys}
    rows: list[dict[str, Any]] = []
    malformed = 0
    for line in bytes(data).split(b"\n"):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            if not isinstance(value, dict):
                raise ValueError("not an object")
            cells = {k: text_cell(value.get(k)) for k in keys}
        except (ValueError, RecursionError):
            malformed += 1
            continue
        for k in keys:
            values[k].append(cells[k])
        rows.append({f: cells[c] if c in cells else value.get(c) for f, c in fields.items()})
    columns = {f: pa.array(values[c], pa.string()) for f, c in texts.items()}
    return Parsed(columns, len(rows), malformed, lambda indices: [rows[i] for i in indices])


class JsonLines(DumpFormat):
    name = "jsonl"
    description = "JSON lines file (plain or .gz)"
    folder_glob = "*.jsonl|*.gz"  # not *.json: dataset cards, stats (name such a file itself)
    url_encoded = True

    def __init__(self) -> None:
        self.ahead: ReadAhead | None = None

    def detect(self, head: bytes) -> bool:
        return _looks_like_json(head)

    def detect_path(self, path: Path, head: bytes) -> bool:
        return _looks_like_json(inner_head(path)) if is_gzip(head) else self.detect(head)

    def plan(self, paths: Sequence[Path]) -> None:
        if self.ahead is not None:
            self.ahead.close()
        self.ahead = ReadAhead.for_files(paths)

    def layout(self, path: Path) -> tuple[tuple[str, ...], list[str]]:
        return (), jsonl_keys(path)

    def spans(self, path: Path, chunk_bytes: int,
               start: int) -> Iterator[tuple[int, memoryview | bytes | SkippedLine]]:
        with open(path, "rb") as handle:
            compressed = is_gzip(handle.read(2))
        if not compressed:
            yield from tsv_spans(path, chunk_bytes, start)
            return
        whole = self.ahead.take(path) if self.ahead is not None else None
        if whole is not None:  # decompressed ahead, in another thread
            yield from buffer_spans(whole, chunk_bytes, start)
            return
        with _reading(path), gzip.open(path, "rb") as stream:
            yield from line_chunks(stream, True, chunk_bytes, start)

    def tasks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
              text_fields: Sequence[str], chunk_bytes: int,
              done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
              ) -> Iterator[ChunkTask]:
        index, start = resume_after(done, 0)
        texts = {f: fields[f] for f in text_fields if f in fields}
        parse = partial(parse_prefiltered, raw_filter=raw_filter) if raw_filter else parse_lines
        for offset, data in self.spans(path, chunk_bytes, start):
            yield partial(_jsonl_chunk, index, offset, data, texts, fields, parse)
            index += 1


def _jsonl_chunk(index: int, offset: int, data: memoryview | bytes | SkippedLine,
                 texts: dict[str, str], fields: dict[str, str],
                 parse: Callable[..., Parsed]) -> Chunk:
    if isinstance(data, SkippedLine):
        return data.chunk(index, offset, texts)
    parsed = parse(data, texts, fields)
    return Chunk(index, offset, offset + len(data), parsed.texts, parsed.rows_at,
                 parsed.num_rows, parsed.malformed)


register_format(JsonLines())
