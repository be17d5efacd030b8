"""The partitioner registry: ``partition(name, labels, **params)`` and ``list_partitioners()``.

Every scheme is registered with :func:`register`, which wraps it so that calling the scheme
directly and calling it through :func:`partition` do the same thing:

- the data may be a label array (list, ndarray, Series) or a manifest DataFrame
  (``label_column`` names its label column, ``"label"`` by default);
- for a manifest with an ``order_by`` column (``"key"`` by default) the rows are first put in
  an order fixed by the keys (see :func:`canonical_order`), so the same keys land in the same
  partitions whatever the row order of the file (``order_by=None`` keeps row positions);
  plain arrays have no identity beyond position, so for them positions decide;
- unknown parameters are rejected with the list of accepted ones;
- ``Partitioning.params`` records every parameter, defaults included, so
  ``partition(p.scheme, data, **p.params)`` re-creates ``p`` exactly.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

from skewtools.partitioners.base import Assigned, to_partitioning
from skewtools.partitioning import Partitioning
from skewtools.samples import Samples, as_samples

SchemeFn = Callable[..., Assigned]
_REGISTRY: dict[str, Callable[..., Partitioning]] = {}


def register(name: str) -> Callable[[SchemeFn], Callable[..., Partitioning]]:
    """Register ``fn(samples, **params) -> Assigned`` under ``name`` (see module docstring)."""

    def decorate(fn: SchemeFn) -> Callable[..., Partitioning]:
        if name in _REGISTRY:
            raise ValueError(f"a partitioner named {name!r} is already registered")
        sig = inspect.signature(fn)
        accepted = [p for p in sig.parameters if p != "samples"]

        @functools.wraps(fn)
        def run(
            data: Any, /, *, label_column: str = "label", order_by: str | None = "key", **params
        ) -> Partitioning:
            unknown = sorted(set(params) - set(accepted))
            if unknown:
                raise TypeError(
                    f"partitioner {name!r} got unknown parameter(s) {unknown}; "
                    f"it takes {accepted} (plus label_column, order_by)"
                )
            try:
                bound = sig.bind(None, **params)
            except TypeError as err:
                raise TypeError(f"partitioner {name!r}: {err}; it takes {accepted}") from err
            bound.apply_defaults()
            full = {k: v for k, v in bound.arguments.items() if k != "samples"}
            samples = as_samples(data, label_column)
            rows = canonical_order(samples, order_by)
            if rows is not None:
                samples = samples.take(rows)
            assigned = fn(samples, **full)
            part = assigned.part
            if rows is not None:
                part = np.empty_like(part)
                part[rows] = assigned.part
            if samples.frame is not None:
                full = {**full, "label_column": label_column, "order_by": order_by}
            return to_partitioning(
                Assigned(part, assigned.names), scheme=name, params=full, num_samples=len(part)
            )

        _REGISTRY[name] = run
        return run

    return decorate


def canonical_order(samples: Samples, order_by: str | None) -> np.ndarray | None:
    """A row order that depends only on the ``order_by`` values, or None to keep positions.

    Numeric keys are sorted; string keys are ordered by a 64-bit hash (2x faster than sorting
    10M strings). Equal hashes (duplicate keys, or a collision: ~3e-6 chance for 10M keys)
    keep their row order.
    """
    if order_by is None or samples.frame is None:
        return None
    if order_by not in samples.frame.columns:
        if order_by == "key":
            return None  # the default: manifests without keys keep their row order
        raise ValueError(f"order_by column {order_by!r} is not in the manifest; pass order_by=None")
    keys = samples.column(order_by).to_numpy()
    if keys.dtype.kind not in "iuf":
        keys = hash_strings(keys.astype(str))
    return np.argsort(keys, kind="stable")


def hash_strings(values: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a over a fixed-width unicode array's code units, then splitmix64's mixer.

    Vectorised over rows (a loop over the few code-unit columns): pandas' object hashing is
    several times slower at 10M keys.
    """
    values = np.ascontiguousarray(values)
    width = values.dtype.itemsize // 4
    units = values.view(np.uint32).reshape(len(values), width)
    h = np.full(len(values), 0xCBF29CE484222325, dtype=np.uint64)
    for j in range(width):
        unit = units[:, j]
        # NUL units are numpy's padding (a str never ends in NUL): skip them, so the hash of a
        # key does not depend on the array's width.
        h = np.where(unit == 0, h, (h ^ unit) * np.uint64(0x100000001B3))
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
        h ^= h >> np.uint64(shift)
        h *= np.uint64(mult)
    return h ^ (h >> np.uint64(31))


def list_partitioners() -> list[str]:
    """Names accepted by :func:`partition`, sorted."""
    return sorted(_REGISTRY)


def get_partitioner(name: str) -> Callable[..., Partitioning]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown partitioner {name!r}; known: {', '.join(list_partitioners())}"
        ) from None


def partition(name: str, data: Any, /, **params: Any) -> Partitioning:
    """Partition ``data`` (labels or a manifest) with the scheme ``name``.

    >>> partition("label_skew", labels, num_partitions=5, noniid_fraction=0.6, seed=0)
    """
    return get_partitioner(name)(data, **params)
