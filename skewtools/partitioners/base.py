"""Shared, vectorised building blocks of the partitioners (no Python loop per sample).

A scheme computes an *assignment*: one partition id per sample (``-1`` = in no partition);
:func:`to_partitioning` turns it into index arrays with one stable radix sort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from skewtools.partitioning import Partitioning
from skewtools.samples import code_dtype

DROPPED = -1


class Assigned(NamedTuple):
    """What a scheme returns: partition id per sample (``-1`` = dropped) and partition names."""

    part: np.ndarray
    names: Sequence[str]


def make_rng(seed: int, *stream: int) -> np.random.Generator:
    """The generator for one random choice of a scheme; ``stream`` separates independent choices."""
    return np.random.default_rng([seed, *stream] if stream else seed)


def check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return int(seed)


def check_num_partitions(num_partitions: object) -> int:
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, int | np.integer):
        raise ValueError(f"num_partitions must be an int >= 1, got {num_partitions!r}")
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, got {num_partitions}")
    return int(num_partitions)


def check_count(name: str, value: object) -> int:
    """A plain int >= 1 (bools and numpy ints are refused, as for any JSON-recorded param)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def check_fraction(name: str, value: object) -> float:
    if not isinstance(value, int | float | np.number) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def check_positive(name: str, value: object) -> float:
    if not isinstance(value, int | float | np.number) or not float(value) > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def check_min_size(min_partition_size: object, num_partitions: int, num_samples: int) -> int:
    if isinstance(min_partition_size, bool) or not isinstance(min_partition_size, int):
        raise ValueError(f"min_partition_size must be an int >= 0, got {min_partition_size!r}")
    if min_partition_size * num_partitions > num_samples:
        raise ValueError(
            f"impossible: {num_partitions} partitions of at least {min_partition_size} samples "
            f"need {min_partition_size * num_partitions} samples, the data has {num_samples}; "
            "lower min_partition_size or num_partitions"
        )
    return min_partition_size


def default_names(num_partitions: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(num_partitions))


def to_partitioning(
    assigned: Assigned, *, scheme: str, params: dict, num_samples: int
) -> Partitioning:
    """Index arrays from an assignment: a stable sort keeps each partition's indices sorted."""
    num_partitions = len(assigned.names)
    part = assigned.part.astype(code_dtype(num_partitions), copy=False)
    order = np.argsort(part, kind="stable")  # radix sort for int16
    counts = np.bincount(part.astype(np.int64) + 1, minlength=num_partitions + 1)
    bounds = np.cumsum(counts)  # bounds[0] = number dropped
    indices = tuple(order[bounds[i] : bounds[i + 1]] for i in range(num_partitions))
    return Partitioning(
        indices=indices,
        names=tuple(assigned.names),
        scheme=scheme,
        params=params,
        num_samples=num_samples,
    )


def deal_round_robin(part: np.ndarray, rows: np.ndarray, num_partitions: int, rng) -> None:
    """Deal ``rows`` in a random order to partitions 0,1,..,N-1,0,1,..: sizes differ by <= 1."""
    shuffled = rows[rng.permutation(len(rows))]
    part[shuffled] = np.arange(len(rows)) % num_partitions


def class_order(codes: np.ndarray, num_classes: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by class (class 0 first) in a random order within each class, and counts.

    A random permutation followed by a stable sort on the (small-int) codes: O(n) radix sort.
    """
    perm = rng.permutation(len(codes))
    order = perm[np.argsort(codes[perm], kind="stable")]
    return order, np.bincount(codes, minlength=num_classes)


def position_in_group(counts: np.ndarray) -> np.ndarray:
    """For rows laid out group after group (sizes ``counts``): each row's position in its group."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(starts, counts)


def apportion(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to ``weights`` summing exactly to ``total`` (largest remainder)."""
    weights = np.asarray(weights, dtype=np.float64)
    share = weights / weights.sum() * total
    out = np.floor(share).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        # Ties go to the lower index (stable sort) so the result is deterministic.
        out[np.argsort(-(share - out), kind="stable")[:short]] += 1
    return out


def blocks(sizes: np.ndarray) -> np.ndarray:
    """Partition id for consecutive blocks of the given sizes (``[0]*s0 + [1]*s1 + ...``)."""
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)
