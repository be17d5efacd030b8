"""SkewScout's communication controller (REFERENCE.md §5, finding 4).

The controller (the paper leaves it unknown; this is ours) is algorithm-agnostic: it never sees
a knob value, only an index into an ordered grid running from *most* communication (index 0) to
*least* (index ``len(grid) - 1``). :func:`ordered_grid` builds that order for Gaia's ``t0``,
FedAvg's ``iter_local`` and DGC's ``sparsity`` (for all three a bigger value communicates less).

The rule, applied once per model-traveling round to the estimated skew-induced accuracy loss
``L`` (a fraction, e.g. 0.04 = 4 points; with ``window > 1`` the median of the last ``window``
estimates, so that one noisy traveling round cannot move the knob) against the target ``T``:

1. **Tighten** when ``L > T``: move one grid step towards more communication, two steps when
   ``L > double_step_ratio * T`` (default 2: a large loss needs a fast reaction; the default
   study sets 10, i.e. never, because traveled-model estimates jump to ~1 early in training).
   Stops at index 0.
2. **Loosen** when ``L < low_ratio * T`` for ``patience`` rounds in a row: move one step towards
   less communication. Stops at the last index.
3. **Hold** in the band ``low_ratio * T <= L <= T`` (the hysteresis band); the loosen streak
   restarts.
4. **Memory** against oscillation: each time a loosen into index ``j`` is followed by a tighten
   out of it, the patience needed to loosen into ``j`` again doubles (``patience * 2**failures``).

Tightening is immediate and loosening patient because an accuracy loss, once the models have
diverged, costs more to undo than a few extra rounds of communication.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Every knob SkewScout turns, and whether a larger value means less communication.
LARGER_IS_LESS_COMMUNICATION: dict[str, bool] = {"t0": True, "iter_local": True, "sparsity": True}

# The paper's grids (REFERENCE.md §4); DGC's is ours: the paper only uses 99.9%. Each is ordered
# from most to least communication.
DEFAULT_GRIDS: dict[str, tuple[float, ...]] = {
    "gaia": (0.02, 0.05, 0.10, 0.20, 0.30),
    "fedavg": (5, 10, 50, 200, 1000),
    "dgc": (0.9, 0.99, 0.999, 0.9999),
}


def ordered_grid(knob_name: str, values: Sequence[float]) -> tuple[float, ...]:
    """Sort ``values`` from most to least communication for the knob ``knob_name``."""
    if knob_name not in LARGER_IS_LESS_COMMUNICATION:
        known = ", ".join(sorted(LARGER_IS_LESS_COMMUNICATION))
        raise KeyError(f"unknown knob {knob_name!r}; known: {known}")
    if not values:
        raise ValueError("the knob grid is empty; give at least one value")
    if len(set(values)) != len(values):
        raise ValueError(f"the knob grid {list(values)} repeats a value; list each once")
    return tuple(sorted(values, reverse=not LARGER_IS_LESS_COMMUNICATION[knob_name]))


@dataclass(frozen=True)
class ControllerConfig:
    """Parameters of the rule in the module docstring."""

    target: float = 0.05          # T: acceptable skew-induced accuracy loss (fraction)
    low_ratio: float = 0.5        # loosen only when L < low_ratio * T
    patience: int = 2             # rounds in a row below the band before loosening
    double_step_ratio: float = 2.0  # tighten two steps when L > double_step_ratio * T
    window: int = 1               # decide on the median of the last `window` estimates

    def __post_init__(self) -> None:
        if not 0 < self.target < 1:
            raise ValueError(f"target={self.target}: give the loss as a fraction in (0, 1)")
        if not 0 <= self.low_ratio < 1:
            raise ValueError(f"low_ratio={self.low_ratio}: must be in [0, 1) to leave a band")
        if self.patience < 1:
            raise ValueError(f"patience={self.patience}: must be at least 1 round")
        if self.double_step_ratio <= 1:
            raise ValueError(f"double_step_ratio={self.double_step_ratio}: must exceed 1")
        if self.window < 1:
            raise ValueError(f"window={self.window}: use 1 (no smoothing) or more estimates")


@dataclass(frozen=True)
class Decision:
    """One controller decision: what it saw and where it moved the knob."""

    iteration: int
    estimate: float
    action: str          # "tighten" | "loosen" | "hold"
    index: int           # grid index after the decision
    knob: float          # grid value after the decision


@dataclass
class KnobController:
    """Turns loss estimates into a grid index (see the module docstring for the rule)."""

    grid: tuple[float, ...]
    config: ControllerConfig = field(default_factory=ControllerConfig)
    index: int = -1                       # -1: start in the middle of the grid
    history: list[Decision] = field(default_factory=list)
    _streak: int = 0
    _recent: list[float] = field(default_factory=list)
    _failures: dict[int, int] = field(default_factory=dict)
    _last_loosened_into: int | None = None

    def __post_init__(self) -> None:
        self.grid = tuple(self.grid)
        if not self.grid:
            raise ValueError("the knob grid is empty; give at least one value")
        if self.index == -1:
            self.index = (len(self.grid) - 1) // 2
        if not 0 <= self.index < len(self.grid):
            raise ValueError(f"index={self.index}: must be in [0, {len(self.grid) - 1}]")

    @property
    def knob(self) -> float:
        return self.grid[self.index]

    @property
    def loosen_pending(self) -> bool:
        """Low estimates are being counted towards a loosen (the knob is not settled)."""
        return self._streak > 0 and self.index < len(self.grid) - 1

    def update(self, estimate: float, iteration: int = 0) -> Decision:
        """Apply the rule to one estimate and return the decision (also kept in ``history``)."""
        cfg = self.config
        self._recent = [*self._recent, float(estimate)][-cfg.window:]
        estimate = float(np.median(self._recent))
        if estimate > cfg.target:
            action = self._tighten(2 if estimate > cfg.double_step_ratio * cfg.target else 1)
        elif estimate < cfg.low_ratio * cfg.target:
            action = self._maybe_loosen()
        else:
            self._streak = 0
            action = "hold"
        decision = Decision(iteration, float(estimate), action, self.index, self.knob)
        self.history.append(decision)
        return decision

    def _tighten(self, steps: int) -> str:
        self._streak = 0
        if self._last_loosened_into == self.index:
            self._failures[self.index] = self._failures.get(self.index, 0) + 1
        self._last_loosened_into = None
        new = max(0, self.index - steps)
        if new == self.index:
            return "hold"
        self.index = new
        return "tighten"

    def _maybe_loosen(self) -> str:
        self._streak += 1
        target = self.index + 1
        if target >= len(self.grid):
            return "hold"
        needed = self.config.patience * 2 ** self._failures.get(target, 0)
        if self._streak < needed:
            return "hold"
        self._streak = 0
        self.index = target
        self._last_loosened_into = target
        return "loosen"
