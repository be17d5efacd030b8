"""Quantity skew: partition sizes differ, labels stay IID (NIID-Bench's ``iid-diff-quantity``).

Sizes come from ``distribution``:

- ``"dirichlet"``: shares ``q ~ Dir(alpha * 1_N)``; smaller alpha = more unequal sizes. Draws
  with a partition below ``min_partition_size`` are redrawn (at most ``max_retries`` in all);
- ``"power_law"``: shares proportional to ``(i + 1) ** -exponent``, so partition 0 is the largest
  (deterministic; ``exponent = 0`` gives equal sizes).

Shares become integer sizes by largest remainder (they sum to the data size; nothing is
dropped); a seeded random permutation is cut into consecutive blocks of those sizes. Labels are
not needed, so this also works on a manifest without a label column.
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    Assigned,
    apportion,
    blocks,
    check_min_size,
    check_num_partitions,
    check_positive,
    check_seed,
    default_names,
    make_rng,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples

DISTRIBUTIONS = ("dirichlet", "power_law")


def _sizes(
    n: int,
    num_partitions: int,
    distribution: str,
    alpha: float,
    exponent: float,
    rng: np.random.Generator,
) -> np.ndarray:
    if distribution == "dirichlet":
        shares = rng.dirichlet(np.full(num_partitions, alpha))
    else:
        shares = np.arange(1, num_partitions + 1, dtype=np.float64) ** -float(exponent)
    return apportion(shares, n)


@register("quantity_skew")
def quantity_skew(
    samples: Samples,
    *,
    num_partitions: int,
    seed: int = 0,
    distribution: str = "dirichlet",
    alpha: float = 1.0,
    exponent: float = 1.0,
    min_partition_size: int = 10,
    max_retries: int = 10,
) -> Assigned:
    """IID labels, unequal sizes (see the module docstring)."""
    num_partitions = check_num_partitions(num_partitions)
    rng = make_rng(check_seed(seed))
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    n = len(samples)
    min_size = check_min_size(min_partition_size, num_partitions, n)
    if distribution == "dirichlet":  # power_law ignores alpha
        alpha = check_positive("alpha", alpha)
    tries = max(1, int(max_retries)) if distribution == "dirichlet" else 1
    for _ in range(tries):
        sizes = _sizes(n, num_partitions, distribution, alpha, exponent, rng)
        if sizes.min() >= min_size:
            part = np.empty(n, dtype=np.int64)
            part[rng.permutation(n)] = blocks(sizes)
            return Assigned(part, default_names(num_partitions))
    raise ValueError(
        f"sizes {sorted(sizes.tolist())[:3]}... fall below min_partition_size={min_size} "
        f"(after {tries} draw(s)); raise alpha, lower exponent, min_partition_size or "
        "num_partitions"
    )
