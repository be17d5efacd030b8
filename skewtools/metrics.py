"""Skew metrics: pure functions of the partitions x classes count matrix (docs/reference.md §5.3).

Distances compare each partition's label distribution ``p`` with the global one ``q`` (the
column sums of the count matrix, i.e. over the partitioned samples). All distribution
functions work row-wise on arrays of shape ``(..., C)``; identical distributions give 0.

========================  ================================================  ==========
metric                    definition                                        range
========================  ================================================  ==========
``total_variation``       ``0.5 * sum |p - q|``                             [0, 1]
``js_divergence``         Jensen-Shannon divergence, base 2 (scipy)         [0, 1]
``hellinger``             ``sqrt(1 - sum sqrt(p q))``                       [0, 1]
``emd``                   earth mover's distance, see :func:`emd`           [0, 2]
``effective_classes``     ``exp(entropy(p))`` (Hill number of order 1)      [1, C]
``size_gini``             Gini coefficient of partition sizes               [0, 1)
``skew_score``            size-weighted mean TV to the global distribution  [0, 1)
========================  ================================================  ==========

Disjoint distributions reach the maximum of TV, JS and Hellinger (1) and of EMD (2).
``skew_score`` is the one-number summary: 0 for IID; for the paper's x% non-IID with
balanced classes and every partition owning C/N classes it is ``x * (1 - 1/N)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy, wasserstein_distance

from skewtools._checks import check_aligned
from skewtools.partitioning import Partitioning
from skewtools.samples import as_samples


def count_matrix(
    partitioning: Partitioning,
    labels: Any,
    *,
    label_column: str = "label",
    classes: np.ndarray | list | None = None,
) -> pd.DataFrame:
    """Samples per (partition, class): rows = partition names, columns = class labels.

    ``labels`` is what the partitioning was made from (array or manifest). Columns are the
    classes present in all of ``labels`` (dropped samples included), or ``classes`` if given
    (e.g. ``range(42)`` to keep classes absent from this dataset).
    """
    samples = as_samples(labels, label_column)
    values = samples.require_labels()
    check_aligned(len(values), partitioning, "{n} labels")
    if classes is None:
        codes, classes = samples.codes, samples.classes
    else:
        classes = np.asarray(classes)
        codes = pd.Index(classes).get_indexer(values)
        if np.any(codes < 0):
            raise ValueError("labels hold values missing from `classes`; list every class")
    num_classes, num_partitions = len(classes), partitioning.num_partitions
    part = partitioning.assignment()
    kept = part >= 0
    flat = part[kept] * num_classes + codes[kept]
    counts = np.bincount(flat, minlength=num_partitions * num_classes)
    return pd.DataFrame(
        counts.reshape(num_partitions, num_classes),
        index=pd.Index(partitioning.names, name="partition"),
        columns=pd.Index(classes, name="class"),
    )


def distributions(counts: Any) -> np.ndarray:
    """Rows normalised to sum to 1 (an empty partition's row is NaN)."""
    counts = np.asarray(counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return counts / counts.sum(axis=-1, keepdims=True)


def global_distribution(counts: Any) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    return counts.sum(axis=0) / counts.sum()


def total_variation(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum(axis=-1)


def js_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Jensen-Shannon divergence in bits (scipy gives the distance, its square root)."""
    p, q = np.broadcast_arrays(np.asarray(p, float), np.asarray(q, float))
    return jensenshannon(p, q, base=2, axis=-1) ** 2


def hellinger(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    bc = np.sqrt(np.asarray(p) * np.asarray(q)).sum(axis=-1)  # Bhattacharyya coefficient
    return np.sqrt(np.clip(1.0 - bc, 0.0, None))


def emd(p: np.ndarray, q: np.ndarray, ground: str = "classwise") -> np.ndarray:
    """Earth mover's distance between label distributions.

    ``ground="classwise"`` (default): the federated-learning convention of Zhao et al. 2018
    ("Federated Learning with Non-IID Data"), ``sum |p - q|``, i.e. EMD when moving mass
    between any two different classes costs 2 (classes are unordered); range [0, 2].
    ``ground="ordinal"``: Wasserstein-1 with ground distance ``|i - j|`` between class
    positions, for ordered classes (scipy); range [0, C - 1].
    """
    p, q = np.broadcast_arrays(np.asarray(p, float), np.asarray(q, float))
    if ground == "classwise":
        return np.abs(p - q).sum(axis=-1)
    if ground != "ordinal":
        raise ValueError(f"ground must be 'classwise' or 'ordinal', got {ground!r}")
    pos = np.arange(p.shape[-1], dtype=float)
    flat_p, flat_q = p.reshape(-1, p.shape[-1]), q.reshape(-1, q.shape[-1])
    out = [
        wasserstein_distance(pos, pos, a, b) if np.isfinite(a).all() else np.nan
        for a, b in zip(flat_p, flat_q, strict=True)  # a loop over partitions, not samples
    ]
    return np.asarray(out).reshape(p.shape[:-1])


def pairwise_js(counts: Any) -> np.ndarray:
    """``P x P`` Jensen-Shannon divergences (bits) between the partitions' distributions."""
    p = distributions(counts)
    return js_divergence(p[:, None, :], p[None, :, :])


def effective_classes(counts: Any) -> np.ndarray:
    """``exp(H(p))`` per partition: k for k equally frequent classes, 1 for a single class."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.exp(entropy(np.asarray(counts, dtype=np.float64), axis=-1))  # NaN if empty


def size_gini(sizes: Any) -> float:
    """Gini coefficient of partition sizes: 0 when equal, (P-1)/P when one holds everything."""
    x = np.sort(np.asarray(sizes, dtype=np.float64))
    n, total = len(x), x.sum()
    if n == 0 or total == 0:
        return 0.0
    # Closed form of sum_ij |x_i - x_j| / (2 n^2 mean) for sorted x.
    return float((2 * np.arange(1, n + 1) - n - 1) @ x / (n * total))


def skew_score(counts: Any) -> float:
    """Size-weighted mean TV distance of the partitions to the global label distribution."""
    counts = np.asarray(counts, dtype=np.float64)
    sizes = counts.sum(axis=1)
    tv = total_variation(distributions(counts), global_distribution(counts))
    return float(np.nansum(tv * sizes) / sizes.sum())
