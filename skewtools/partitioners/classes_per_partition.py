"""Each partition holds ``num_classes_per_partition`` labels (NIID-Bench's ``#C=k``; Flower's
``PathologicalPartitioner``).

Which classes a partition holds (``class_assignment``):

- ``"even"`` (default): partition ``i`` holds classes ``(i*k + j) % C`` for ``j < k`` (class codes
  in sorted label order), so labels are spread as evenly as possible; with ``N*k >= C`` every
  class is held;
- ``"random"``: partition ``i`` holds class ``i % C`` and ``k-1`` other distinct classes drawn
  with the seed (NIID-Bench's rule).

Each class's samples (in a seeded random order) are dealt round-robin to the partitions holding
it, so they get equal shares (+-1). **Samples of classes that no partition holds are dropped**
(``Partitioning.dropped`` counts them).
"""

from __future__ import annotations

import numpy as np

from skewtools.partitioners.base import (
    DROPPED,
    Assigned,
    check_num_partitions,
    check_seed,
    class_order,
    default_names,
    make_rng,
    position_in_group,
)
from skewtools.partitioners.registry import register
from skewtools.samples import Samples

ASSIGNMENTS = ("even", "random")


def held_classes(num_partitions: int, num_classes: int, k: int, mode: str, rng) -> np.ndarray:
    """``(N, k)`` class codes held by each partition."""
    if mode == "even":
        return (np.arange(num_partitions)[:, None] * k + np.arange(k)) % num_classes
    held = np.empty((num_partitions, k), dtype=np.int64)
    for i in range(num_partitions):  # a loop over partitions, not samples
        first = i % num_classes
        others = np.delete(np.arange(num_classes), first)
        held[i] = np.concatenate([[first], rng.choice(others, size=k - 1, replace=False)])
    return held


@register("classes_per_partition")
def classes_per_partition(
    samples: Samples,
    *,
    num_partitions: int,
    num_classes_per_partition: int,
    seed: int = 0,
    class_assignment: str = "even",
) -> Assigned:
    """k classes per partition, each class shared equally by its holders."""
    num_partitions = check_num_partitions(num_partitions)
    rng = make_rng(check_seed(seed))
    codes, num_classes = samples.codes, samples.num_classes
    k = num_classes_per_partition
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_classes:
        raise ValueError(
            f"num_classes_per_partition must be an int in [1, {num_classes}], got {k!r}"
        )
    if class_assignment not in ASSIGNMENTS:
        raise ValueError(f"class_assignment must be one of {ASSIGNMENTS}, got {class_assignment!r}")
    held = held_classes(num_partitions, num_classes, k, class_assignment, rng)
    # holders[c] lists the partitions holding class c (padded); num_holders[c] how many.
    pairs = np.stack([held.ravel(), np.repeat(np.arange(num_partitions), k)], axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
    num_holders = np.bincount(pairs[:, 0], minlength=num_classes)
    first_pair = np.cumsum(num_holders) - num_holders
    order, counts = class_order(codes, num_classes, rng)
    cls = np.repeat(np.arange(num_classes), counts)
    h = num_holders[cls]
    pos = position_in_group(counts)
    part = np.full(len(codes), DROPPED, dtype=np.int64)
    held_mask = h > 0
    pick = first_pair[cls[held_mask]] + pos[held_mask] % h[held_mask]
    part[order[held_mask]] = pairs[pick, 1]
    return Assigned(part, default_names(num_partitions))
