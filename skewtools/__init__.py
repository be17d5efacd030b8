"""skewtools: build non-IID partitions of any labelled dataset and measure their skew (issue #4).

>>> import skewtools
>>> p = skewtools.partition("label_skew", labels, num_partitions=5, noniid_fraction=0.6, seed=0)
>>> p.indices  # one sorted int64 index array per partition
>>> skewtools.skew_report(skewtools.count_matrix(p, labels)).summary["skew_score"]
"""

from skewtools.metrics import count_matrix
from skewtools.partitioners import get_partitioner, list_partitioners, partition
from skewtools.partitioning import Partitioning
from skewtools.report import SkewReport, skew_report
from skewtools.samples import Samples, as_samples

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
