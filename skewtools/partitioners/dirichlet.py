"""Dirichlet label skew (NIID-Bench's ``noniid-labeldir``, Flower's ``DirichletPartitioner``).

For each class, proportions ``p ~ Dir(alpha * 1_N)`` split that class's samples (in a seeded
random order) over the N partitions. ``alpha`` moves skew the other way round from its size:
**smaller alpha = more skew** (each partition dominated by a few classes; alpha = 0.1 is
strongly non-IID), larger alpha = closer to IID (alpha -> inf gives equal shares).

Partitions smaller than ``min_partition_size`` (10 by default, as in NIID-Bench and Flower)
trigger a redraw, ``max_retries`` draws in all (at least one); then a ``ValueError`` says what to
change. The draws continue one seeded stream, so the result is deterministic. No sample is dropped.
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    Assigned,
    check_min_size,
    check_num_partitions,
    check_positive,
    check_seed,
    class_order,
    default_names,
    make_rng,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples


def split_counts(proportions: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Rows of ``proportions`` (C x N) turned into integer sizes summing to ``counts`` per row."""
    cum = np.rint(np.cumsum(proportions, axis=1) * counts[:, None]).astype(np.int64)
    cum[:, -1] = counts  # guard against the cumsum ending at 0.9999999
    cum = np.maximum.accumulate(cum, axis=1)
    return np.diff(cum, axis=1, prepend=0)


@register("dirichlet")
def dirichlet(
    samples: Samples,
    *,
    num_partitions: int,
    alpha: float,
    seed: int = 0,
    min_partition_size: int = 10,
    max_retries: int = 10,
) -> Assigned:
    """Per-class Dirichlet(alpha) shares over the partitions (see the module docstring)."""
    num_partitions = check_num_partitions(num_partitions)
    alpha = check_positive("alpha", alpha)
    rng = make_rng(check_seed(seed))
    codes = samples.codes
    min_size = check_min_size(min_partition_size, num_partitions, len(codes))
    smallest = -1
    attempts = max(1, int(max_retries))  # at least one draw, whatever max_retries says
    for _ in range(attempts):
        order, counts = class_order(codes, samples.num_classes, rng)
        props = rng.dirichlet(np.full(num_partitions, alpha), size=samples.num_classes)
        sizes = split_counts(props, counts)  # classes x partitions
        smallest = int(sizes.sum(axis=0).min())
        if smallest >= min_size:
            part = np.empty(len(codes), dtype=np.int64)
            owner = np.tile(np.arange(num_partitions), samples.num_classes)
            part[order] = np.repeat(owner, sizes.ravel())
            return Assigned(part, default_names(num_partitions))
    raise ValueError(
        f"no draw in {attempts} attempt{'s' if attempts > 1 else ''} gave every partition >= "
        f"{min_size} samples (smallest: {smallest}); lower min_partition_size or "
        f"num_partitions, raise alpha (less skew), or raise max_retries (now {max_retries!r})"
    )
