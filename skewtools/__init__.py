"""skewtools: build non-IID partitions of any labelled dataset and measure their skew.

>>> import skewtools
>>> p = skewtools.partition("label_skew", labels, num_partitions=5, noniid_fraction=0.6, seed=0)
>>> p.indices  # one sorted int64 index array per partition
>>> skewtools.skew_report(skewtools.count_matrix(p, labels)).summary["skew_score"]

The names below load on first use (PEP 562), so ``import skewtools.io`` (the atomic-write
helper flickr_mammal's build stages use) does not pull in scipy and pandas at start-up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from skewtools.metrics import count_matrix
    from skewtools.partitioners import get_partitioner, list_partitioners, partition
    from skewtools.partitioning import Partitioning
    from skewtools.report import SkewReport, skew_report
    from skewtools.samples import Samples, as_samples

_EXPORTS = {
    "count_matrix": "skewtools.metrics",
    "get_partitioner": "skewtools.partitioners",
    "list_partitioners": "skewtools.partitioners",
    "partition": "skewtools.partitioners",
    "Partitioning": "skewtools.partitioning",
    "SkewReport": "skewtools.report",
    "skew_report": "skewtools.report",
    "Samples": "skewtools.samples",
    "as_samples": "skewtools.samples",
}
__all__ = [
    "Partitioning",
    "Samples",
    "SkewReport",
    "as_samples",
    "count_matrix",
    "get_partitioner",
    "list_partitioners",
    "partition",
    "skew_report",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'skewtools' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
