"""Read a local Flickr metadata dump in chunks: the YFCC100M TSV (optionally .bz2) or parquet.

YFCC100M (Thomee et al. 2016) ships one tab-separated line per photo or video, no header, no
quoting, text URL-encoded. The full release has 25 columns (below); the first Webscope release
had 23 (no line number, no hash). The layout is told apart by the first line's column count.

Chunks are deterministic, so a resumed scan meets the same ones: a TSV chunk is the bytes from
its start offset up to the last newline within ``chunk_bytes`` (a longer line is taken whole);
a parquet chunk is one row group. Plain TSV files are memory-mapped (chunks are views, never
copied) and resume at the next chunk's offset; .bz2 streams cannot seek and are decompressed
(not parsed) up to it.
"""

from __future__ import annotations

import bz2
import logging
import mmap
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger(__name__)

FORMATS = ("yfcc100m", "parquet")
YFCC_COLUMNS: tuple[str, ...] = (
    "line", "photoid", "hash", "uid", "unickname", "datetaken", "dateuploaded", "capturedevice",
    "title", "description", "usertags", "machinetags", "longitude", "latitude", "accuracy",
    "pageurl", "downloadurl", "licensename", "licenseurl", "serverid", "farmid", "secret",
    "secretoriginal", "ext", "marker",
)
YFCC_COLUMNS_23 = tuple(c for c in YFCC_COLUMNS if c not in ("line", "hash"))
# Record field -> default column name (YFCC100M's own names; parquet re-publications of it use
# them too). Map other names with --metadata-columns field=column (field= drops the column).
FIELDS: dict[str, str] = {
    "photo_id": "photoid", "owner": "uid", "owner_name": "unickname", "title": "title",
    "description": "description", "tags": "usertags", "latitude": "latitude",
    "longitude": "longitude", "accuracy": "accuracy", "license": "licensename",
    "date_upload": "dateuploaded", "date_taken": "datetaken", "url": "downloadurl",
    "server": "serverid", "secret": "secret", "video": "marker",
}
REQUIRED = ("photo_id", "latitude", "longitude", "license", "date_upload")
TEXT_FIELDS = ("title", "description", "tags")


class DumpColumnError(ValueError):
    """The dump lacks a column the scan needs (the message names it and how to map it)."""


class DumpScanMismatch(ValueError):
    """The output folder holds a scan made with other options (flickr_mammal.dump.search)."""


@dataclass(frozen=True)
class MetadataConfig:
    """Where the dump is and how to read it (paths kept as text: the config is stored as JSON)."""

    path: str
    format: str = "auto"                            # yfcc100m | parquet | auto (by name)
    columns: tuple[tuple[str, str], ...] = ()       # (field, column) overrides of FIELDS
    chunk_bytes: int = 64 << 20                     # TSV bytes per committed chunk
    seed: int = 0                                   # key of the per-class hash order
    # Read, parse and prefilter the next chunk in a thread while this one's hit rows are
    # matched and committed: None = when there are 2 CPUs or more (docs/notes/scan.md).
    prefetch: bool | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "columns", tuple(tuple(p) for p in self.columns))
        if not Path(self.path).exists():
            raise ValueError(f"--metadata {self.path}: no such file or folder")
        fmt = self.format
        if fmt == "auto":
            fmt = "parquet" if Path(self.path).is_dir() or self.path.endswith(".parquet") \
                else "yfcc100m"
            object.__setattr__(self, "format", fmt)
        if fmt not in FORMATS:
            raise ValueError(f"--metadata-format {fmt!r}: use one of {', '.join(FORMATS)}")
        unknown = [f for f, _ in self.columns if f not in FIELDS]
        if unknown:
            raise ValueError(f"--metadata-columns: unknown field(s) {', '.join(unknown)}; "
                             f"fields are {', '.join(FIELDS)}")
        if self.chunk_bytes < 1 << 16:
            raise ValueError(f"chunk_bytes={self.chunk_bytes}: use at least 65536 bytes "
                             "(--metadata-chunk-mb 0.0625)")

    @property
    def mapping(self) -> dict[str, str]:
        """Field -> column name ("" = not read)."""
        return {**FIELDS, **dict(self.columns)}

    def files(self) -> list[Path]:
        root = Path(self.path)
        if not root.is_dir():
            return [root]
        pattern = "*.parquet" if self.format == "parquet" else "*"
        found = sorted(p for p in root.rglob(pattern) if p.is_file())
        if not found:
            raise ValueError(f"--metadata {root}: the folder holds no {pattern} file")
        return found


def parse_columns(text: str) -> tuple[tuple[str, str], ...]:
    """``field=column,...`` (an empty column drops an optional field)."""
    pairs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, column = part.partition("=")
        if not sep:
            raise ValueError(f"--metadata-columns: expected field=column, got {part!r}")
        pairs.append((name.strip(), column.strip()))
    return tuple(pairs)


def resolve_columns(mapping: Mapping[str, str], available: Sequence[str],
                    where: str) -> dict[str, str]:
    """Field -> column among ``available``; raises DumpColumnError naming a missing column."""
    present = set(available)
    out: dict[str, str] = {}
    for name, column in mapping.items():
        if column and column in present:
            out[name] = column
        elif name in REQUIRED or (column and column != FIELDS.get(name)):
            raise DumpColumnError(
                f"{where} has no column {column!r} for field {name}; map it with "
                f"--metadata-columns {name}=COLUMN (columns: {', '.join(available)})")
    if not any(f in out for f in TEXT_FIELDS):
        raise DumpColumnError(f"{where} has none of the text fields {', '.join(TEXT_FIELDS)}; "
                              "map one with --metadata-columns title=COLUMN")
    if "url" not in out and not {"server", "secret"} <= set(out):
        raise DumpColumnError(f"{where} has no image URL column (url) nor server and secret "
                              "columns; map them with --metadata-columns url=COLUMN")
    return out


# ---- TSV ------------------------------------------------------------------------------------
def _open(path: Path) -> BinaryIO:
    return bz2.open(path, "rb") if path.suffix == ".bz2" else open(path, "rb")  # noqa: SIM115


def tsv_layout(path: Path) -> tuple[str, ...]:
    """The YFCC100M column names of ``path`` (25 or 23 columns, told by the first line)."""
    with _open(path) as handle:
        first = handle.readline()
    n = first.count(b"\t") + 1
    for layout in (YFCC_COLUMNS, YFCC_COLUMNS_23):
        if n == len(layout):
            return layout
    raise DumpColumnError(f"{path}: line 1 has {n} tab-separated columns; the YFCC100M layout "
                          "has 25 (or 23 in the first release); for another layout use "
                          "--metadata-format parquet")


def tsv_chunks(path: Path, chunk_bytes: int, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """``(start offset, bytes)`` of each chunk from ``start`` on (whole lines only).

    A plain file is read at each chunk's offset (no copying of 64 MB blocks to join or cut
    them: the partial last line is simply read again with the next chunk); a .bz2 stream,
    which cannot seek, carries that line over."""
    compressed = path.suffix == ".bz2"
    with _open(path) as handle:
        if compressed:
            skip = start
            while skip > 0:
                got = len(handle.read(min(skip, 1 << 24)))
                if not got:
                    return
                skip -= got
        carry, offset = b"", start
        while True:
            if not compressed:
                handle.seek(offset)
            data = handle.read(chunk_bytes - len(carry))
            if carry:
                data = carry + data
            if not data:
                return
            cut = data.rfind(b"\n") + 1
            while not cut:  # a line longer than chunk_bytes: take it whole
                more = handle.readline()
                data += more
                cut = len(data) if not more or data.endswith(b"\n") else 0
            if cut < len(data):
                carry = data[cut:] if compressed else b""
                data = data[:cut]
            else:
                carry = b""
            yield offset, data
            offset += cut


def tsv_spans(path: Path, chunk_bytes: int, start: int = 0) -> Iterator[tuple[int, memoryview]]:
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
    view = memoryview(mapped)
    offset = start
    while offset < size:
        cut = mapped.rfind(b"\n", offset, min(size, offset + chunk_bytes)) + 1
        if not cut:  # a line longer than chunk_bytes (or the unterminated tail): whole
            newline = mapped.find(b"\n", offset + chunk_bytes)
            cut = size if newline < 0 else newline + 1
        yield offset, view[offset:cut]
        offset = cut


def parse_tsv(data: bytes | memoryview, layout: Sequence[str],
              columns: Sequence[str]) -> tuple[Any, int]:
    """A pyarrow Table (string columns) of the wanted ``columns`` and the malformed-row count."""
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
             table: Any, indices: Sequence[int], offset: int = 0) -> list[dict[str, Any]]:
    """Full rows (field -> value) of some rows of a chunk parsed with only a few columns:
    each row's line is found again in the chunk's bytes by its photo id (rows are in file
    order, so one forward pass; measured cheaper than parsing the 12 other columns of every
    row). A row whose id is not a digit string keeps its parsed columns only (the scan drops
    it as ``bad_id`` anyway). ``data`` may be a view of a memory map (:func:`tsv_spans`) that
    starts at ``offset``: the map itself is searched, nothing is copied."""
    source, base = (data.obj, offset) if isinstance(data, memoryview) else (data, 0)
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


# ---- parquet --------------------------------------------------------------------------------
def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    return list(pq.ParquetFile(path).schema_arrow.names)


def parquet_groups(path: Path, columns: Sequence[str], skip: set[int]) -> Iterator[tuple[int,
                                                                                        Any]]:
    """``(row group index, Table)`` of each row group not in ``skip``."""
    import pyarrow.parquet as pq

    handle = pq.ParquetFile(path)
    for group in range(handle.num_row_groups):
        if group not in skip:
            yield group, handle.read_row_group(group, columns=list(columns))
