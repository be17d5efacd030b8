"""The result of every partitioner: one index array per partition, with names and provenance.

A ``Partitioning`` is what a study records so it can be re-run exactly (docs/reference.md §3): save
it to JSON (small studies, human-readable) or Parquet (millions of samples) and load it back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skewtools.io import atomic_write_text, atomic_write_with


@dataclass(frozen=True, eq=False)
class Partitioning:
    """``indices[i]`` holds the (sorted, int64) row indices of partition ``names[i]``.

    ``scheme`` and ``params`` record what made it (so a study can be re-run exactly);
    ``num_samples`` is the length of the labelled data it was made from; ``dropped`` counts
    samples that the scheme assigned to no partition (0 for all but a few schemes).

    Construction checks that every index lies in ``[0, num_samples)`` and that no sample is in
    two partitions; index arrays are converted to sorted int64 arrays.
    """

    indices: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    scheme: str
    params: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 0

    def __post_init__(self) -> None:
        if len(self.indices) != len(self.names):
            raise ValueError(
                f"{len(self.indices)} index arrays but {len(self.names)} names; give one name each"
            )
        names = tuple(str(n) for n in self.names)
        if len(set(names)) != len(names):
            raise ValueError(f"partition names must be unique, got {list(names)}")
        indices = tuple(_as_sorted_int64(ix) for ix in self.indices)
        num_samples = int(self.num_samples)
        if num_samples == 0 and any(len(ix) for ix in indices):
            # Lenient default for hand-built records: the data is at least this long.
            num_samples = int(max(ix[-1] for ix in indices if len(ix))) + 1
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "indices", indices)
        object.__setattr__(self, "num_samples", num_samples)
        _check_disjoint(indices, num_samples)

    @property
    def num_partitions(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(ix) for ix in self.indices], dtype=np.int64)

    @property
    def dropped(self) -> int:
        return int(self.num_samples - self.sizes.sum())

    def partition_id(self, partition: int | str) -> int:
        """Position of a partition given by position (int) or by name (str)."""
        if isinstance(partition, int | np.integer) and not isinstance(partition, bool):
            if not 0 <= partition < self.num_partitions:
                raise ValueError(f"partition {partition} out of range [0, {self.num_partitions})")
            return int(partition)
        if partition in self.names:
            return self.names.index(partition)
        raise ValueError(f"no partition named {partition!r}; names: {list(self.names)}")

    def assignment(self) -> np.ndarray:
        """Partition id per sample (-1 where a sample belongs to no partition)."""
        out = np.full(self.num_samples, -1, dtype=np.int64)
        for pid, ix in enumerate(self.indices):
            out[ix] = pid
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partitioning):
            return NotImplemented
        return (
            self.names == other.names
            and self.scheme == other.scheme
            and self.num_samples == other.num_samples
            and _jsonable(self.params) == _jsonable(other.params)
            and all(np.array_equal(a, b) for a, b in zip(self.indices, other.indices, strict=True))
        )

    __hash__ = None  # type: ignore[assignment]  # mutable arrays inside: not hashable

    def save(self, path: str | Path) -> None:
        """Write to ``path``: Parquet when it ends in ``.parquet``, else JSON (indices as lists).

        :meth:`load` reads either back exactly.
        """
        path = Path(path)
        if path.suffix == ".parquet":
            _save_parquet(self, path)
            return
        doc = {**self._meta(), "indices": [ix.tolist() for ix in self.indices]}
        atomic_write_text(path, json.dumps(doc, default=_json_default))

    @classmethod
    def load(cls, path: str | Path) -> Partitioning:
        path = Path(path)
        if path.suffix == ".parquet":
            return _load_parquet(path)
        doc = json.loads(path.read_text())
        return cls._from_meta(doc, [np.asarray(ix, dtype=np.int64) for ix in doc["indices"]])

    def _meta(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "params": _jsonable(self.params),
            "num_samples": self.num_samples,
            "names": list(self.names),
        }

    @classmethod
    def _from_meta(cls, meta: dict[str, Any], indices: list[np.ndarray]) -> Partitioning:
        """The inverse of :meth:`_meta`, given the index arrays stored beside it."""
        return cls(
            indices=tuple(indices),
            names=tuple(meta["names"]),
            scheme=meta["scheme"],
            params=meta["params"],
            num_samples=int(meta["num_samples"]),
        )


def _as_sorted_int64(ix: Any) -> np.ndarray:
    arr = np.asarray(ix)
    if arr.ndim != 1:
        raise ValueError(f"each partition's indices must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"indices must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size > 1 and np.any(arr[1:] < arr[:-1]):
        arr = np.sort(arr)
    return arr


def _check_disjoint(indices: tuple[np.ndarray, ...], num_samples: int) -> None:
    seen = np.zeros(num_samples, dtype=bool)
    for pid, ix in enumerate(indices):
        if not ix.size:
            continue
        if ix[0] < 0 or ix[-1] >= num_samples:
            raise ValueError(
                f"partition {pid} has indices outside [0, {num_samples}); "
                "num_samples must be the length of the data the indices point into"
            )
        if np.any(ix[1:] == ix[:-1]) or seen[ix].any():
            raise ValueError(f"partition {pid} repeats a sample; every sample is in at most one")
        seen[ix] = True


def _jsonable(obj: Any) -> Any:
    """Params as plain JSON types (tuples -> lists, numpy scalars -> Python) for stable equality."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a partitioning file")


def _save_parquet(p: Partitioning, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    part = np.repeat(np.arange(p.num_partitions, dtype=np.int32), p.sizes)
    index = np.concatenate(p.indices) if p.indices else np.zeros(0, dtype=np.int64)
    table = pa.table({"index": index, "partition": part})
    meta = json.dumps(p._meta(), default=_json_default)
    table = table.replace_schema_metadata({b"skewtools": meta.encode()})
    atomic_write_with(path, lambda tmp: pq.write_table(table, tmp))


def _load_parquet(path: Path) -> Partitioning:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    doc = json.loads(table.schema.metadata[b"skewtools"])
    index = table.column("index").to_numpy()
    part = table.column("partition").to_numpy()
    bounds = np.searchsorted(part, np.arange(len(doc["names"]) + 1))
    indices = [index[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return Partitioning._from_meta(doc, indices)
