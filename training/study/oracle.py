"""The Oracle SkewScout is measured against (docs/reference.md §5, finding 4).

The Oracle knows in advance the *fixed* knob value with the least communication whose final
accuracy meets the target: ``final_acc >= baseline_acc - target`` where the baseline is BSP's
final accuracy on the same data. It is found by a grid search over the paper's grids
(:data:`training.skewscout.DEFAULT_GRIDS`). "Least communication" is measured (bytes per
partition per iteration), not assumed from the knob's order. When no value meets the target the
Oracle falls back to the most-communicating value and says so (``feasible=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from training.study.spread import Spread


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


# SkewScout's goal in this project: within this many times the Oracle's bytes (the paper: 1.5x).
GOAL_RATIO = 1.2


@dataclass(frozen=True)
class SeedGoal:
    """A policy (one fixed knob on every seed, or SkewScout) judged seed by seed, each seed
    against its own BSP and its own Oracle, over the seeds where some grid knob meets the
    target (the goal's seeds)."""

    on_target: tuple[int, ...]      # the goal's seeds where the policy met the target
    ratios: dict[int, float]        # the policy's bytes / that seed's Oracle's bytes

    @property
    def seeds(self) -> int:
        return len(self.ratios)

    @property
    def spread(self) -> Spread:
        """The ratios over the goal's seeds (mean, sd)."""
        return Spread.of(self.ratios)

    def meets(self, limit: float = GOAL_RATIO) -> bool:
        """On target on every one of the goal's seeds, at <= ``limit`` x on the mean."""
        return (bool(self.ratios) and len(self.on_target) == self.seeds
                and self.spread.mean <= limit)


def seed_oracles(bsp: Mapping[int, float], grid: Mapping[float, Mapping[int, KnobOutcome]],
                 target: float) -> dict[int, OracleChoice]:
    """Each seed's own Oracle: ``grid`` maps a knob to its run per seed; seeds missing from BSP
    or from any knob are left out, and so are seeds where no knob meets the target."""
    seeds = set(bsp).intersection(*(set(by_seed) for by_seed in grid.values()))
    choices = {s: select_oracle([grid[k][s] for k in sorted(grid)], bsp[s], target)
               for s in sorted(seeds)}
    return {s: c for s, c in choices.items() if c.feasible}


def judge_per_seed(policy: Mapping[int, KnobOutcome], bsp: Mapping[int, float],
                   oracles: Mapping[int, OracleChoice], target: float) -> SeedGoal:
    """``policy``'s runs (by seed) against each seed's Oracle (:func:`seed_oracles`)."""
    seeds = [s for s in sorted(oracles) if s in policy]
    return SeedGoal(
        tuple(s for s in seeds if meets_target(policy[s].final_acc, bsp[s], target)),
        {s: policy[s].bytes_per_iteration / max(oracles[s].bytes_per_iteration, 1e-12)
         for s in seeds})


def best_fixed_in_hindsight(grid: Mapping[float, Mapping[int, KnobOutcome]],
                            bsp: Mapping[int, float], oracles: Mapping[int, OracleChoice],
                            target: float, limit: float = GOAL_RATIO) -> float | None:
    """The knob that, run on every seed, meets the per-seed goal at the fewest bytes on the
    mean (None: no knob does; the goal then asks for foresight of each seed's outcome)."""
    judged = {k: judge_per_seed(runs, bsp, oracles, target) for k, runs in grid.items()}
    ok = [k for k, goal in judged.items() if goal.seeds == len(oracles) and goal.meets(limit)]
    return min(ok, key=lambda k: judged[k].spread.mean) if ok else None
