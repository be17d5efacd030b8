"""The Oracle SkewScout is measured against (docs/reference.md §5, finding 4).

The Oracle knows in advance the *fixed* knob value with the least communication whose final
accuracy meets the target: ``final_acc >= baseline_acc - target`` where the baseline is BSP's
final accuracy on the same data. It is found by a grid search over the paper's grids
(:data:`training.skewscout.DEFAULT_GRIDS`). "Least communication" is measured (bytes per
partition per iteration), not assumed from the knob's order. When no value meets the target the
Oracle falls back to the most-communicating value and says so (``feasible=False``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def meets_target(acc: float, baseline_acc: float, target: float) -> bool:
    """``acc >= baseline_acc - target``, with a tiny tolerance so that a float equal to the
    threshold counts as meeting it."""
    return acc >= baseline_acc - target - 1e-9


@dataclass(frozen=True)
class KnobOutcome:
    """The result of one fixed-knob run."""

    knob: float
    final_acc: float
    bytes_per_iteration: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.final_acc <= 1.0:
            raise ValueError(f"final_acc={self.final_acc}: give accuracy as a fraction in [0, 1]")
        if self.bytes_per_iteration < 0:
            raise ValueError(f"bytes_per_iteration={self.bytes_per_iteration}: must be >= 0")


@dataclass(frozen=True)
class OracleChoice:
    """The Oracle's knob and every candidate it considered."""

    knob: float
    final_acc: float
    bytes_per_iteration: float
    feasible: bool
    threshold: float                       # the accuracy a candidate had to reach
    candidates: tuple[KnobOutcome, ...]


def select_oracle(outcomes: Sequence[KnobOutcome], baseline_acc: float,
                  target: float) -> OracleChoice:
    """Pick the least-communicating outcome with ``final_acc >= baseline_acc - target``."""
    if not outcomes:
        raise ValueError("no outcomes to choose from; run at least one grid value")
    if target < 0:
        raise ValueError(f"target={target}: the allowed accuracy loss must be >= 0")
    feasible = [o for o in outcomes if meets_target(o.final_acc, baseline_acc, target)]
    if feasible:
        best = min(feasible, key=lambda o: (o.bytes_per_iteration, -o.final_acc))
    else:
        best = max(outcomes, key=lambda o: (o.bytes_per_iteration, o.final_acc))
    return OracleChoice(best.knob, best.final_acc, best.bytes_per_iteration, bool(feasible),
                        baseline_acc - target, tuple(outcomes))

