"""The Oracle: least communication among fixed knobs that meet the accuracy target."""

from __future__ import annotations

import pytest

from training.study.oracle import (
    KnobOutcome,
    best_fixed_in_hindsight,
    judge_per_seed,
    seed_oracles,
    select_oracle,
)

# A tiny FedAvg grid: bigger IterLocal sends less and (here) loses accuracy.
TABLE = {5: (0.90, 80.0), 10: (0.89, 40.0), 50: (0.86, 8.0), 200: (0.70, 2.0)}


def run(knob):
    acc, b = TABLE[int(knob)]
    return KnobOutcome(knob, acc, b)


def test_select_cheapest_value_meeting_target():
    choice = select_oracle([run(k) for k in TABLE], baseline_acc=0.90, target=0.05)
    assert choice.feasible and choice.knob == 50 and choice.bytes_per_iteration == 8.0
    assert choice.threshold == pytest.approx(0.85)
    tight = select_oracle([run(k) for k in TABLE], baseline_acc=0.90, target=0.01)
    assert tight.knob == 10


def test_threshold_is_inclusive_and_infeasible_falls_back_to_most_communication():
    assert select_oracle([run(k) for k in TABLE], 0.90, 0.04).knob == 50   # 0.86 == 0.90 - 0.04
    none = select_oracle([run(k) for k in TABLE], baseline_acc=0.99, target=0.01)
    assert not none.feasible and none.knob == 5


def test_validation():
    with pytest.raises(ValueError, match="fraction"):
        KnobOutcome(5, 90.0, 1.0)
    with pytest.raises(ValueError, match="no outcomes"):
        select_oracle([], 0.9, 0.05)


# Three seeds, BSP 0.90 / 0.94 / 0.92, a 0.04 target: thresholds 0.86 / 0.90 / 0.88.
# IterLocal 10 (4 bytes) meets on every seed; 50 (1 byte) only on seed 0; 600 on none.
BSP = {0: 0.90, 1: 0.94, 2: 0.92}
GRID = {10.0: {s: KnobOutcome(10, a, 4.0) for s, a in {0: 0.88, 1: 0.92, 2: 0.90}.items()},
        50.0: {s: KnobOutcome(50, a, 1.0) for s, a in {0: 0.89, 1: 0.88, 2: 0.85}.items()},
        600.0: {s: KnobOutcome(600, 0.5, 0.1) for s in BSP}}


def test_each_seed_has_its_own_oracle_and_seeds_without_one_are_left_out():
    oracles = seed_oracles(BSP, GRID, 0.04)
    assert {s: c.knob for s, c in oracles.items()} == {0: 50, 1: 10, 2: 10}
    assert seed_oracles({**BSP, 3: 0.99}, GRID, 0.04).keys() == {0, 1, 2}   # no knob on 3
    # a seed some knob did not run on is no seed of the goal
    partial = {**GRID, 50.0: {s: GRID[50.0][s] for s in (0, 1)}}
    assert seed_oracles(BSP, partial, 0.04).keys() == {0, 1}
    assert seed_oracles({3: 0.99}, GRID, 0.04) == {}


def test_a_policy_is_judged_seed_by_seed_against_each_seeds_oracle():
    oracles = seed_oracles(BSP, GRID, 0.04)
    ten = judge_per_seed(GRID[10.0], BSP, oracles, 0.04)
    assert ten.on_target == (0, 1, 2) and ten.ratios == {0: 4.0, 1: 1.0, 2: 1.0}
    assert not ten.meets() and ten.meets(2.0)            # 2x its Oracle's bytes on the mean
    fifty = judge_per_seed(GRID[50.0], BSP, oracles, 0.04)
    assert fifty.on_target == (0,) and not fifty.meets(100.0)   # misses seeds 1 and 2
    scout = {0: KnobOutcome(0, 0.87, 1.1), 1: KnobOutcome(0, 0.91, 4.4),
             2: KnobOutcome(0, 0.885, 4.0)}
    goal = judge_per_seed(scout, BSP, oracles, 0.04)
    assert goal.seeds == 3 and goal.on_target == (0, 1, 2)
    assert goal.meets() and not goal.meets(1.05)          # 1.1, 1.1, 1.0: 1.067 on the mean
    assert judge_per_seed({}, BSP, oracles, 0.04).meets() is False


def test_the_best_fixed_knob_in_hindsight_or_none():
    oracles = seed_oracles(BSP, GRID, 0.04)
    assert best_fixed_in_hindsight(GRID, BSP, oracles, 0.04) is None    # 10: 2x; 50 misses
    assert best_fixed_in_hindsight(GRID, BSP, oracles, 0.04, limit=2.0) == 10.0
    only = {10.0: GRID[10.0], 600.0: GRID[600.0]}
    assert best_fixed_in_hindsight(only, BSP, seed_oracles(BSP, only, 0.04), 0.04) == 10.0
