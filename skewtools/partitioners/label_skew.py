"""Label skew, the paper's "x% non-IID" (docs/reference.md §3).

With ``noniid_fraction = x``:

1. for each class ``y`` with ``n_y`` samples, ``floor(x * n_y + 0.5)`` of them (chosen at random
   with the seed; halves round up) go to the class's owner partition;
2. owners spread labels as evenly as possible: integer labels use the paper's ``y % N``
   (10 classes over 5 partitions: 2 classes each); other label types use the class's rank in
   sorted order, ``rank % N``;
3. every other sample is dealt uniformly at random: a seeded permutation dealt round-robin, so
   that part is balanced (sizes differ by at most one).

At ``x = 1`` on labels ``0..9`` with ``N = 5`` this is exactly ``y % N``; at ``x = 0`` it is the
same partitioning as ``iid`` with the same seed. No sample is dropped. With fewer classes than
partitions, the partitions that own no class only get the IID part.
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    DROPPED,
    Assigned,
    check_fraction,
    check_num_partitions,
    check_seed,
    class_order,
    deal_round_robin,
    default_names,
    make_rng,
    position_in_group,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples


def label_owners(classes: np.ndarray, num_partitions: int) -> np.ndarray:
    """Owner partition per class code: ``y % N`` for integer labels, else ``rank % N``."""
    if np.issubdtype(classes.dtype, np.integer):
        return classes.astype(np.int64) % num_partitions
    return np.arange(len(classes), dtype=np.int64) % num_partitions


@register("label_skew")
def label_skew(
    samples: Samples, *, num_partitions: int, noniid_fraction: float, seed: int = 0
) -> Assigned:
    """The paper's x% non-IID partitions (see the module docstring for the exact rule)."""
    num_partitions = check_num_partitions(num_partitions)
    fraction = check_fraction("noniid_fraction", noniid_fraction)
    seed = check_seed(seed)
    codes = samples.codes
    part = np.full(len(codes), DROPPED, dtype=np.int64)
    if fraction > 0:
        order, counts = class_order(codes, samples.num_classes, make_rng(seed, 1))
        take = np.floor(fraction * counts + 0.5).astype(np.int64)
        chosen = order[position_in_group(counts) < np.repeat(take, counts)]
        part[chosen] = label_owners(samples.classes, num_partitions)[codes[chosen]]
    rest = np.flatnonzero(part == DROPPED)
    deal_round_robin(part, rest, num_partitions, make_rng(seed))
    return Assigned(part, default_names(num_partitions))
