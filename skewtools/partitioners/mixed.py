"""Mixed skew: any registered scheme inside each natural partition (e.g. continent x Dirichlet).

The manifest is first split with :func:`by_attribute` (``attribute``, ``min_size``, ``small``,
``top_n``, ``missing``, ``missing_values`` as there; its dropped rows stay dropped), then
``inner`` (a registered name) with ``inner_params`` partitions each group on its own.
Partitions are named ``"<group>/<inner name>"``, e.g. ``"Europe/0"``. Each group gets its own
seed derived from ``seed`` and the group's position, so groups are independent yet the whole
is deterministic.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skewtools.partitioners.base import DROPPED, Assigned, check_seed
from skewtools.partitioners.by_attribute import by_attribute
from skewtools.partitioners.registry import get_partitioner, register
from skewtools.samples import Samples


def group_seed(seed: int, group: int) -> int:
    return int(np.random.SeedSequence([seed, group]).generate_state(1)[0])


@register("mixed")
def mixed(
    samples: Samples,
    *,
    attribute: str,
    inner: str,
    inner_params: dict[str, Any] | None = None,
    seed: int = 0,
    min_size: int = 1,
    small: str = "merge",
    top_n: int | None = None,
    missing: str = "drop",
    missing_values: list | None = None,
) -> Assigned:
    """``inner`` applied inside each natural partition of ``attribute``."""
    seed = check_seed(seed)
    inner_params = dict(inner_params or {})
    if "seed" in inner_params:
        raise ValueError("give the seed to mixed, not inside inner_params (each group derives one)")
    inner_fn = get_partitioner(inner)
    outer = by_attribute(
        samples, attribute=attribute, min_size=min_size, small=small, top_n=top_n,
        missing=missing, missing_values=missing_values, order_by=None,
    )  # fmt: skip
    part = np.full(len(samples), DROPPED, dtype=np.int64)
    names: list[str] = []
    for g, (group, rows) in enumerate(zip(outer.names, outer.indices, strict=True)):
        sub = inner_fn(samples.take(rows), order_by=None, seed=group_seed(seed, g), **inner_params)
        for inner_name, ix in zip(sub.names, sub.indices, strict=True):
            part[rows[ix]] = len(names)
            names.append(f"{group}/{inner_name}")
    return Assigned(part, names)
