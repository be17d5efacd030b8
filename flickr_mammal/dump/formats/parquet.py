"""Parquet metadata dumps (re-publications of YFCC100M and the like): one chunk per row group.

Columns are named (map them with ``--metadata-columns``); text is plain (not URL-encoded). A
text column may be a string, binary, number or list column (tags): it is read as text, lists
joined by commas. A cell that cannot be text (binary that is not UTF-8, a struct or map) makes
its row a malformed one, skipped and counted; other odd cells (an infinite date, an absurd
accuracy) are counted malformed when the row is staged (flickr_mammal/dump/rows.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from flickr_mammal.dump.errors import DumpFileError
from flickr_mammal.dump.formats import Chunk, DumpFormat, register_format
from flickr_mammal.dump.formats.lines import RawFilter


def _open(path: Path) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise DumpFileError(f"{path} is not a readable parquet file ({exc}); expected a "
                            "parquet file with the dump's columns") from None


def parquet_columns(path: Path) -> list[str]:
    return list(_open(path).schema_arrow.names)


def parquet_groups(path: Path, columns: Sequence[str], skip: set[int]) -> Iterator[tuple[int,
                                                                                        Any]]:
    """``(row group index, Table)`` of each row group not in ``skip``."""
    import pyarrow as pa

    handle = _open(path)
    for group in range(handle.num_row_groups):
        if group not in skip:
            try:
                table = handle.read_row_group(group, columns=list(columns))
            except (pa.ArrowException, OSError) as exc:
                raise DumpFileError(f"{path}: row group {group} cannot be read ({exc}); "
                                    "expected a complete parquet file") from None
            yield group, table


def text_column(column: Any) -> tuple[Any, Any]:
    """(string array, boolean mask of the rows whose cell cannot be text) of one column."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    none = pa.array([False] * len(column), pa.bool_())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column, none
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values, bad = text_column(column.flatten())
        if pc.any(bad).as_py():  # a list of structs or of non-UTF-8 bytes: the rows are bad
            return pa.nulls(len(column), pa.string()), pc.invert(pc.is_null(column))
        joined = pa.ListArray.from_arrays(column.offsets, values) \
            if pa.types.is_list(kind) else pa.LargeListArray.from_arrays(column.offsets, values)
        return pc.binary_join(joined, ","), none
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        texts, bad = [], []
        for value in column.to_pylist():  # rare: a per-cell check is fine
            try:
                texts.append(None if value is None else value.decode("utf-8"))
                bad.append(False)
            except UnicodeDecodeError:
                texts.append(None)
                bad.append(True)
        return pa.array(texts, pa.string()), pa.array(bad, pa.bool_())
    if pa.types.is_null(kind):
        return pa.nulls(len(column), pa.string()), none
    try:
        return pc.cast(column, pa.string()), none
    except pa.ArrowException:  # a struct, a map, ...: no text in it
        return pa.nulls(len(column), pa.string()), pc.invert(pc.is_null(column))


def _rows_at(table: Any, fields: dict[str, str], indices: list[int]) -> list[dict[str, Any]]:
    """Field -> value rows of some rows of a chunk's table (the prefilter's hits)."""
    picked = table.take(indices).to_pylist()
    return [{f: r[c] for f, c in fields.items()} for r in picked]


class Parquet(DumpFormat):
    name = "parquet"
    description = "parquet file"
    folder_glob = "*.parquet"

    def detect(self, head: bytes) -> bool:
        return head.startswith(b"PAR1")

    def layout(self, path: Path) -> tuple[tuple[str, ...], list[str]]:
        return (), parquet_columns(path)

    def chunks(self, path: Path, layout: Sequence[str], fields: dict[str, str],
               text_fields: Sequence[str], chunk_bytes: int,
               done: list[tuple[int, int]], raw_filter: RawFilter | None = None,
               ) -> Iterator[Chunk]:
        import pyarrow.compute as pc

        text_columns = {fields[f] for f in text_fields if f in fields}
        skip = {index for index, _ in done}
        for group, table in parquet_groups(path, sorted(set(fields.values())), skip):
            malformed = 0
            for name in sorted(text_columns):
                column, bad = text_column(table[name])
                table = table.set_column(table.schema.get_field_index(name), name, column)
                if pc.any(bad).as_py():
                    malformed += pc.sum(bad).as_py()
                    table = table.filter(pc.invert(bad))
            texts = {f: table[fields[f]] for f in text_fields if f in fields}
            yield Chunk(group, group, group + 1, texts, partial(_rows_at, table, fields),
                        table.num_rows, malformed)


register_format(Parquet())
