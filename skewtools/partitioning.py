"""The result of every partitioner: one index array per partition, with names and provenance."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Partitioning:
    """``indices[i]`` holds the (sorted, int64) row indices of partition ``names[i]``.

    ``scheme`` and ``params`` record what made it (so a study can be re-run exactly);
    ``num_samples`` is the length of the labelled data it was made from; ``dropped`` counts
    samples that the scheme assigned to no partition (0 for all but a few schemes).
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

    @property
    def num_partitions(self) -> int:
        return len(self.indices)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(ix) for ix in self.indices], dtype=np.int64)

    @property
    def dropped(self) -> int:
        return int(self.num_samples - self.sizes.sum())

    def assignment(self) -> np.ndarray:
        """Partition id per sample (-1 where a sample belongs to no partition)."""
        out = np.full(self.num_samples, -1, dtype=np.int64)
        for pid, ix in enumerate(self.indices):
            out[ix] = pid
        return out

    def save(self, path: str | Path) -> None:
        """Write a small JSON file (indices as lists) that :meth:`load` reads back exactly."""
        doc = {
            "scheme": self.scheme,
            "params": self.params,
            "num_samples": self.num_samples,
            "names": list(self.names),
            "indices": [ix.tolist() for ix in self.indices],
        }
        Path(path).write_text(json.dumps(doc, default=_json_default))

    @classmethod
    def load(cls, path: str | Path) -> Partitioning:
        doc = json.loads(Path(path).read_text())
        return cls(
            indices=tuple(np.asarray(ix, dtype=np.int64) for ix in doc["indices"]),
            names=tuple(doc["names"]),
            scheme=doc["scheme"],
            params=doc["params"],
            num_samples=int(doc["num_samples"]),
        )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a partitioning file")
