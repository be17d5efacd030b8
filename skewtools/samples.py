"""What a partitioner sees: the labels (and, for manifests, the other columns) of a dataset.

Partitioners take a plain label array or a manifest DataFrame (columns like ``label``,
``continent``, ``country_code``, ``owner``); :func:`as_samples` turns either into a
:class:`Samples` view with the labels encoded once as dense class codes ``0..C-1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

# Integer labels below this bound are encoded with a lookup table (O(n)) instead of a sort.
_LOOKUP_LIMIT = 1 << 22


@dataclass(frozen=True)
class Samples:
    """A dataset's rows as partitioners see them.

    ``labels`` are the original label values (``None`` when a manifest has no label column);
    ``frame`` is the manifest, when there is one, for schemes that group by a column; ``rows``
    (when set) selects and orders the frame's rows lazily, so only the columns a scheme reads
    are ever copied.
    """

    labels: np.ndarray | None
    frame: pd.DataFrame | None = None
    label_column: str | None = None
    rows: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}; flatten them")
        if self.labels is None and self.frame is None:
            raise ValueError("give labels, a manifest frame, or both")
        if self.frame is not None and self.labels is not None:
            if self._frame_len() != len(self.labels):
                raise ValueError("labels and manifest have different lengths")

    def _frame_len(self) -> int:
        return len(self.frame) if self.rows is None else len(self.rows)  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.labels) if self.labels is not None else self._frame_len()

    def require_labels(self) -> np.ndarray:
        if self.labels is None:
            raise ValueError(
                f"the manifest has no {self.label_column!r} column; this scheme needs labels: "
                "pass label_column=<the column holding them>"
            )
        return self.labels

    def column(self, name: str) -> pd.Series:
        """A manifest column (for by_attribute / mixed); plain label arrays have none."""
        if self.frame is None:
            raise ValueError(f"column {name!r} needs a manifest DataFrame, not a plain label array")
        if name not in self.frame.columns:
            raise ValueError(
                f"manifest has no column {name!r}; columns: {list(self.frame.columns)}"
            )
        column = self.frame[name]
        return column if self.rows is None else column.iloc[self.rows]

    @cached_property
    def _encoded(self) -> tuple[np.ndarray, np.ndarray]:
        return encode_labels(self.require_labels())

    @property
    def codes(self) -> np.ndarray:
        """Dense class code per sample, ``0..num_classes-1`` in sorted label order."""
        return self._encoded[0]

    @property
    def classes(self) -> np.ndarray:
        """The distinct label values present, sorted; ``classes[code]`` is the label."""
        return self._encoded[1]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def take(self, rows: np.ndarray) -> Samples:
        """The samples at ``rows`` (a reordering or a subset), positions renumbered from 0."""
        labels = None if self.labels is None else self.labels[rows]
        if self.frame is not None:
            rows = rows if self.rows is None else self.rows[rows]
        return Samples(labels, self.frame, self.label_column, None if self.frame is None else rows)


def as_samples(data: Any, label_column: str = "label") -> Samples:
    """Wrap a label array / list / Series, or a manifest DataFrame, as :class:`Samples`."""
    if isinstance(data, Samples):
        return data
    if isinstance(data, pd.DataFrame):
        frame = data  # positions, never the index, identify rows
        labels = frame[label_column].to_numpy() if label_column in frame.columns else None
        return Samples(labels=labels, frame=frame, label_column=label_column)
    labels = data.to_numpy() if isinstance(data, pd.Series) else np.asarray(data)
    return Samples(labels=labels)  # Samples rejects labels that are not 1-D


def encode_labels(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, classes)`` with ``classes[codes] == labels``; codes use the smallest int dtype.

    Small codes let numpy's stable sort use radix sort, which keeps 10M-label partitioning fast.
    """
    if len(labels) == 0:
        return np.zeros(0, dtype=np.int16), labels[:0]
    if labels.dtype.kind not in "iub" and pd.isna(labels).any():
        raise ValueError("labels contain missing values; drop or fill those rows first")
    if (
        np.issubdtype(labels.dtype, np.integer)
        and labels.min() >= 0
        and labels.max() < _LOOKUP_LIMIT
    ):
        present = np.bincount(labels) > 0
        classes = np.flatnonzero(present).astype(labels.dtype)
        lookup = np.cumsum(present) - 1
        codes = lookup[labels]
    else:
        try:
            classes, codes = np.unique(labels, return_inverse=True)
        except TypeError as err:
            raise ValueError(f"labels must be of one sortable type: {err}") from err
    return codes.astype(code_dtype(len(classes)), copy=False), classes


def code_dtype(num_codes: int) -> type[np.signedinteger]:
    """The smallest int dtype for codes ``-1..num_codes-1``: int16 sorts by radix sort."""
    return np.int16 if num_codes < np.iinfo(np.int16).max else np.int32
