"""What a metadata dump is and how to read it: :class:`MetadataConfig`, the record fields and
the dump columns they come from, column mapping. The formats themselves (YFCC100M TSV, plain
or .bz2; its SQLite and JSON-lines copies; parquet) are a registry, one module each in
:mod:`flickr_mammal.dump.formats`; a
file's format is told by its content unless ``--metadata-format`` forces one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flickr_mammal.dump.errors import DumpColumnError, DumpFileError, DumpScanMismatch
from flickr_mammal.dump.formats import (
    DumpFormat,
    check_format,
    detect_format,
    format_names,
    get_format,
)
from flickr_mammal.dump.formats.parquet import parquet_columns, parquet_groups
from flickr_mammal.dump.formats.tsv import (
    YFCC_COLUMNS,
    YFCC_COLUMNS_23,
    parse_tsv,
    tsv_chunks,
    tsv_layout,
    tsv_rows,
    tsv_spans,
)

__all__ = [
    "FIELDS", "REQUIRED", "TEXT_FIELDS", "YFCC_COLUMNS", "YFCC_COLUMNS_23", "DumpColumnError",
    "DumpFileError", "DumpScanMismatch", "MetadataConfig", "format_names", "parquet_columns",
    "parquet_groups", "parse_columns", "parse_tsv", "resolve_columns", "tsv_chunks",
    "tsv_layout", "tsv_rows", "tsv_spans",
]
log = logging.getLogger(__name__)
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


@dataclass(frozen=True)
class MetadataConfig:
    """Where the dump is and how to read it (paths kept as text: the config is stored as JSON)."""

    path: str
    format: str = "auto"                            # a formats registry name | auto (content)
    columns: tuple[tuple[str, str], ...] = ()       # (field, column) overrides of FIELDS
    chunk_bytes: int = 64 << 20                     # TSV bytes per committed chunk
    seed: int = 0                                   # key of the per-class hash order
    # Threads reading, parsing and prefiltering the next chunks (several at once, committed
    # in order) while this one's hit rows are matched and committed: None = one per CPU up to
    # 4 (none on one CPU), 0 = everything in the scan's own thread.
    readers: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", str(self.path))
        object.__setattr__(self, "columns", tuple(tuple(p) for p in self.columns))
        if not Path(self.path).exists():
            raise ValueError(f"--metadata {self.path}: no such file or folder")
        if self.format == "auto":
            object.__setattr__(self, "format", self._detect().name)
        elif not Path(self.path).is_dir():  # a forced format: say now if the file is another
            check_format(Path(self.path), get_format(self.format))
        get_format(self.format)  # unknown: the error lists the known ones
        unknown = [f for f, _ in self.columns if f not in FIELDS]
        if unknown:
            raise ValueError(f"--metadata-columns: unknown field(s) {', '.join(unknown)}; "
                             f"fields are {', '.join(FIELDS)}")
        if self.readers is not None and self.readers < 0:
            raise ValueError(f"readers={self.readers}: give 0 (no reader thread) or more, or "
                             "None (one per CPU)")
        if self.chunk_bytes < 1 << 16:
            raise ValueError(f"chunk_bytes={self.chunk_bytes}: use at least 65536 bytes "
                             "(--metadata-chunk-mb 0.0625)")

    @property
    def mapping(self) -> dict[str, str]:
        """Field -> column name ("" = not read)."""
        return {**FIELDS, **dict(self.columns)}

    @property
    def reader(self) -> DumpFormat:
        return get_format(self.format)

    def _detect(self) -> DumpFormat:
        """A file's format by its content; a folder's by its first file (parquet first)."""
        root = Path(self.path)
        if not root.is_dir():
            return detect_format(root)
        for fmt in (get_format(n) for n in format_names()):
            if fmt.folder_glob != "*" and _listed(root, fmt.folder_glob):
                return fmt
        found = _listed(root, "*")
        if not found:
            raise DumpFileError(f"--metadata {root}: the folder holds no file; expected "
                                "metadata files (YFCC100M TSV, .bz2 or .gz, SQLite, JSON lines or "
                                ".gz, parquet)")
        return detect_format(found[0])

    def files(self) -> list[Path]:
        """The dump's files, each checked to be of the format (DumpFileError names one not)."""
        root = Path(self.path)
        fmt = self.reader
        found = _listed(root, fmt.folder_glob) if root.is_dir() else [root]
        if not found:
            raise DumpFileError(f"--metadata {root}: the folder holds no {fmt.folder_glob} "
                                f"file; expected {fmt.description}s")
        for path in found:
            check_format(path, fmt)
        fmt.plan(found)
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


def _listed(root: Path, pattern: str) -> list[Path]:
    """The files under ``root`` matching ``pattern`` (``a|b``: either), sorted; hidden ones
    (.crc, .DS_Store) and Spark's ``_SUCCESS`` markers are not data."""
    return sorted({p for one in pattern.split("|") for p in root.rglob(one) if p.is_file()
                   and not p.name.startswith((".", "_"))})
