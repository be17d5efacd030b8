"""Natural partitions from a manifest column (docs/reference.md §1, §5): continent, subcontinent,
country_code, owner, ...

One partition per distinct value, ordered by size (largest first, ties by name). Groups outside
the ``top_n`` largest, or smaller than ``min_size``, are handled by ``small``:

- ``"merge"`` (default): pooled into one last partition named ``"other"`` (which may itself be
  smaller than ``min_size``);
- ``"drop"``: **dropped** (in no partition; ``Partitioning.dropped`` counts them).

Rows with no value (NaN/None, e.g. an unresolvable location) are never guessed: ``missing="drop"``
(default) **drops** them, ``missing="group"`` gives them their own group ``"(missing)"``.
``missing_values`` lists values that mean "no value" too (Flickr-Mammal writes ``"unknown"``).
No randomness is involved, so there is no seed and the result never depends on row order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from skewtools.partitioners.base import DROPPED, Assigned, check_count
from skewtools.partitioners.registry import register
from skewtools.samples import Samples

OTHER = "other"
MISSING = "(missing)"
SMALL = ("merge", "drop")
MISSING_RULES = ("drop", "group")


def _check(min_size: object, small: str, top_n: object, missing: str) -> None:
    check_count("min_size", min_size)
    if small not in SMALL:
        raise ValueError(f"small must be one of {SMALL}, got {small!r}")
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ValueError(f"top_n must be None or an int >= 1, got {top_n!r}")
    if missing not in MISSING_RULES:
        raise ValueError(f"missing must be one of {MISSING_RULES}, got {missing!r}")


def group_codes(
    values: pd.Series, missing: str, missing_values: list | None = None
) -> tuple[np.ndarray, list[str]]:
    """Group code per row (-1 = missing, dropped) and group names (codes in first-seen order)."""
    if missing_values:
        values = values.mask(values.isin(list(missing_values)))
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if missing == "group" and (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append(MISSING)
    return codes.astype(np.int64), names


@register("by_attribute")
def by_attribute(
    samples: Samples,
    *,
    attribute: str,
    min_size: int = 1,
    small: str = "merge",
    top_n: int | None = None,
    missing: str = "drop",
    missing_values: list | None = None,
) -> Assigned:
    """One partition per value of ``attribute`` (see the module docstring)."""
    _check(min_size, small, top_n, missing)
    codes, names = group_codes(samples.column(attribute), missing, missing_values)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    rank = sorted(range(len(names)), key=lambda g: (-counts[g], names[g]))  # loop over groups
    keep = [g for i, g in enumerate(rank) if counts[g] >= min_size and (top_n is None or i < top_n)]
    new_id = np.full(len(names) + 1, DROPPED, dtype=np.int64)  # last slot: code -1 (missing)
    new_id[keep] = np.arange(len(keep))
    out_names = [names[g] for g in keep]
    kept = set(keep)
    leftover = [g for g in rank if g not in kept and counts[g] > 0]
    if small == "merge" and leftover:
        new_id[leftover] = len(keep)
        out_names.append(OTHER if OTHER not in out_names else f"{OTHER} (merged)")
    return Assigned(new_id[codes], out_names)
