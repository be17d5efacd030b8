"""A Partitioning as a Flower Datasets ``Partitioner`` (optional extra ``flwr-datasets``).

>>> from datasets import Dataset
>>> index = pd.read_parquet("data/fm/shards/shards.parquet")    # has a "key" column
>>> p = partition("by_attribute", index, attribute="continent")
>>> fl = as_flower_partitioner(p, keys=index["key"])
>>> fl.dataset = hf_dataset          # the same samples, in any row order, with a "key" column
>>> fl.load_partition(0)             # a datasets.Dataset with partition 0's rows

A Partitioning holds row positions of the data it was made from. Flower's ``FederatedDataset``
shuffles the rows before handing them to the partitioner (``shuffle=True`` by default), so row
positions alone would give each partition mostly other partitions' samples, silently. Hence:

- a dataset with a sample-key column (``key`` or ``__key__``) is matched **by key**: each
  partition gets exactly the rows whose keys it was made from, whatever their order. The
  reference keys are ``keys=`` (aligned with the partitioned data), else the dataset's own
  key column in its underlying (unshuffled) table order;
- a dataset without keys is served by row position only when its rows are in their original
  order; a reordered one (a shuffle or a selection) raises, saying to pass ``shuffle=False``
  or to use a keyed dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from skewtools._checks import check_aligned
from skewtools.partitioning import Partitioning

KEY_COLUMNS: Final = ("key", "__key__")


def _key_column(dataset: Any, key_column: str | None) -> str | None:
    names = dataset.column_names
    if key_column is not None:
        if key_column not in names:
            raise ValueError(f"dataset has no key column {key_column!r}; columns: {names}")
        return key_column
    return next((c for c in KEY_COLUMNS if c in names), None)


def _reordered(dataset: Any) -> bool:
    # datasets.Dataset keeps shuffles and selections as an indices mapping over its table;
    # there is no public flag for it. Without one we cannot tell, and assume the table order.
    return getattr(dataset, "_indices", None) is not None


def _reference_keys(dataset: Any, column: str, keys: Sequence[str] | None) -> list[str]:
    if keys is not None:
        return [str(k) for k in keys]
    # The underlying Arrow table keeps the rows in their original order under a shuffle.
    return [str(k) for k in dataset.data.column(column).to_pylist()]


class _KeyedRows:
    """Row positions of a dataset by sample key (built once per assigned dataset)."""

    def __init__(self, dataset: Any, column: str) -> None:
        current = [str(k) for k in dataset[column]]
        self.position = {key: i for i, key in enumerate(current)}
        if len(self.position) != len(current):
            raise ValueError(f"dataset column {column!r} repeats keys: it must identify samples")


def as_flower_partitioner(partitioning: Partitioning, keys: Sequence[str] | None = None,
                          key_column: str | None = None) -> Any:
    """Wrap ``partitioning`` in a ``flwr_datasets.partitioner.Partitioner`` subclass.

    ``keys``: the sample key of each row the partitioning was made from (e.g. the ``key``
    column of the shard index it was made from); ``key_column``: the dataset column holding
    keys (default ``key`` or ``__key__``, whichever exists). See the module docstring for how
    rows are matched.
    """
    try:
        from flwr_datasets.partitioner import Partitioner
    except ImportError as err:
        raise ImportError(
            "the Flower adapter needs flwr-datasets: pip install 'noniid-quagmire[flower]'"
        ) from err
    if keys is not None:
        check_aligned(len(keys), partitioning, "keys has {n} entries")

    class SkewtoolsPartitioner(Partitioner):
        """Serves the partitions of a fixed :class:`~skewtools.Partitioning`."""

        def __init__(self, fixed: Partitioning) -> None:
            super().__init__()
            self.partitioning = fixed
            self._rows: tuple[int, _KeyedRows, list[str]] | None = None

        @property
        def num_partitions(self) -> int:
            return self.partitioning.num_partitions

        def load_partition(self, partition_id: int) -> Any:
            data = self.dataset
            check_aligned(len(data), self.partitioning, "dataset has {n} rows")
            ix = self.partitioning.indices[self.partitioning.partition_id(partition_id)]
            column = _key_column(data, key_column)
            if column is None:
                if _reordered(data):
                    raise ValueError(
                        "the dataset's rows were reordered (FederatedDataset shuffles by "
                        "default) and it has no key/__key__ column, so partition rows cannot "
                        "be matched: pass shuffle=False to FederatedDataset, or use a dataset "
                        "with a sample-key column")
                return data.select(ix)
            return data.select(self._by_key(data, column, ix))

        def _by_key(self, data: Any, column: str, ix: np.ndarray) -> list[int]:
            if self._rows is None or self._rows[0] != id(data):
                reference = _reference_keys(data, column, keys)
                check_aligned(len(reference), self.partitioning, "the reference keys are {n}")
                self._rows = (id(data), _KeyedRows(data, column), reference)
            _, rows, reference = self._rows
            wanted = [reference[i] for i in ix]
            missing = [k for k in wanted if k not in rows.position]
            if missing:
                raise ValueError(f"{len(missing)} sample keys of this partition are not in the "
                                 f"dataset's {column!r} column, e.g. {missing[:3]}")
            return sorted(rows.position[k] for k in wanted)

    return SkewtoolsPartitioner(partitioning)
