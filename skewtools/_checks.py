"""Checks shared by the loaders and metrics: data must line up with its partitioning."""

from __future__ import annotations

from skewtools.partitioning import Partitioning


def check_aligned(count: int, partitioning: Partitioning, what: str, hint: str = "") -> None:
    """Raise ``ValueError`` unless ``count`` rows match the samples ``partitioning`` was made from.

    ``what`` describes the rows with ``{n}`` for their count (``"dataset has {n} rows"``);
    ``hint``, when given, says how to fix it.
    """
    if count != partitioning.num_samples:
        message = (f"{what.format(n=count)} but the partitioning was made from "
                   f"{partitioning.num_samples}")
        raise ValueError(f"{message}; {hint}" if hint else message)
