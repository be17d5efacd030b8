"""IID partitions (docs/reference.md §3): every partition sees the global label distribution.

- ``method="random"`` (default): a seeded random permutation dealt round-robin, so partition
  sizes differ by at most one;
- ``method="round_robin"``: the paper's rule, sample ``i`` -> partition ``i % N`` (no randomness;
  the paper's data was already shuffled). For a manifest with a ``key`` column, ``i`` counts rows
  in the key-determined order (see :mod:`skewtools.partitioners.registry`); pass
  ``order_by=None`` to count rows as stored.
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    Assigned,
    check_num_partitions,
    check_seed,
    deal_round_robin,
    default_names,
    make_rng,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples

METHODS = ("random", "round_robin")


@register("iid")
def iid(
    samples: Samples, *, num_partitions: int, seed: int = 0, method: str = "random"
) -> Assigned:
    """Uniform partitions; no sample is dropped."""
    num_partitions = check_num_partitions(num_partitions)
    seed = check_seed(seed)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    n = len(samples)
    if method == "round_robin":
        return Assigned(np.arange(n) % num_partitions, default_names(num_partitions))
    part = np.empty(n, dtype=np.int64)
    deal_round_robin(part, np.arange(n), num_partitions, make_rng(seed))
    return Assigned(part, default_names(num_partitions))
