"""The controller's rule 7 (a tighten must visibly lower the estimate, else its knob becomes the
phase's floor) and SkewScout's ``start = "loosest"``, on scripted estimate and cost traces: the
FedAvg-at-100%-non-IID shape (the estimate reads ~1.0 at every IterLocal before the first decay,
so it cannot tell 10 from 5) and the cases the rule must leave alone."""

from __future__ import annotations

import pytest

from training.skewscout.controller import ControllerConfig, KnobController
from training.skewscout.scout import SkewScout, SkewScoutConfig

GRID = (5.0, 10.0, 50.0, 200.0, 600.0)     # FedAvg IterLocal, most -> least communication
# bytes per iteration as measured in a 600-iteration run: 600 and 200 send nothing in the
# first rounds (no averaging yet), 50 and 10 do
COST = {4: 0.0, 3: 0.0, 2: 6.3e3, 1: 3.1e4, 0: 6.3e4}


def run(estimates, *, response_ratio=0.8, start=4, costs=COST):
    """Feed ``estimates`` one round each, recording the current knob's cost before each round
    after the first (as SkewScout does) and return the knob after every round."""
    ctl = KnobController(GRID, ControllerConfig(target=0.1, double_step_ratio=10.0,
                                                response_ratio=response_ratio), index=start)
    knobs = []
    for r, e in enumerate(estimates):
        if r and ctl.index in costs:
            ctl.record_cost(ctl.index, costs[ctl.index])
        knobs.append(ctl.update(e, 40 * r).knob)
    return knobs, ctl


SATURATED = [0.98, 1.0, 0.97, 0.99, 0.98, 1.0, 0.96, 0.99]


def test_without_rule_7_saturated_estimates_tighten_to_the_grids_end():
    knobs, _ = run(SATURATED, response_ratio=None)
    assert knobs[-1] == 5.0


def test_a_tighten_that_does_not_lower_the_estimate_sets_the_phases_floor():
    knobs, ctl = run(SATURATED)
    # 600 -> 200 -> 50 -> 10: 600 and 200 sent nothing, so their flat estimates judge nothing;
    # 50 and 10 both communicated and read the same: 10 becomes the floor and the knob holds
    assert knobs[:4] == [200.0, 50.0, 10.0, 10.0]
    assert knobs[4:] == [10.0] * 4 and ctl.floor == 1
    assert [d.action for d in ctl.history[3:]] == ["hold"] * 5


def test_a_tighten_that_lowers_the_estimate_may_be_followed_by_another():
    # 50 -> 10 cut the estimate from 0.9 to 0.5 (below 0.8 x 0.9): no floor, and the loss that
    # remains at 10 still tightens to 5
    knobs, ctl = run([0.9, 0.5, 0.5, 0.5], start=2)
    assert knobs == [10.0, 5.0, 5.0, 5.0] and ctl.floor == 0


def test_a_knob_that_sent_nothing_gives_no_verdict():
    # everything sends nothing: no flat estimate can be blamed on a knob, so it keeps tightening
    knobs, ctl = run(SATURATED, costs={i: 0.0 for i in range(5)})
    assert knobs[-1] == 5.0 and ctl.floor == 0


def test_the_floor_lasts_one_learning_rate_phase():
    _, ctl = run(SATURATED)
    assert ctl.floor == 1
    ctl.new_phase()
    assert ctl.floor == 0
    ctl.update(0.9, 400)
    assert ctl.knob == 5.0          # a real loss after the decay may tighten past it


def test_the_floor_allows_loosening_and_tightening_back_to_it():
    knobs, ctl = run([*SATURATED[:4], 0.0, 0.0, *[0.9] * 5])
    assert knobs[5] == 50.0         # two quiet rounds loosen 10 -> 50
    # the loss comes back: 10 costs ~5x 50, so three rounds, and down to the floor only
    assert knobs[6:] == [50.0, 50.0, 10.0, 10.0, 10.0] and ctl.floor == 1


def test_response_ratio_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="response_ratio=1.5: give a fraction in"):
        ControllerConfig(response_ratio=1.5)


def test_skewscout_starts_at_the_grids_loosest_knob_when_told():
    assert SkewScout(GRID, SkewScoutConfig(start="loosest")).initial_knob == 600.0
    assert SkewScout(GRID, SkewScoutConfig()).initial_knob == 50.0
    assert SkewScout(GRID, SkewScoutConfig(start="loosest", initial_index=1)).initial_knob == 10.0
    with pytest.raises(ValueError, match="start='tightest': choose one of middle, loosest"):
        SkewScoutConfig(start="tightest")


def test_from_the_grids_middle_one_flat_tighten_sets_the_floor():
    # 50 was never measured (the first round records no cost): its flat estimate still counts
    knobs, ctl = run(SATURATED, start=2)
    assert knobs == [10.0] * 8 and ctl.floor == 1
    assert run(SATURATED, start=2, response_ratio=None)[0][-1] == 5.0


def test_an_unvisited_tighter_knob_can_be_assumed_to_cost_more():
    ctl = KnobController(GRID, ControllerConfig(target=0.1, unvisited_ratio=2.0), index=2)
    assert ctl.rounds_to_tighten_into(1) == 2           # 10 unmeasured: counts as 2x 50
    ctl.record_cost(2, 0.0)
    assert ctl.rounds_to_tighten_into(1) == 1           # 50 sends nothing: no confirmation
    ctl.record_cost(2, 100.0)
    ctl.record_cost(1, 500.0)
    assert ctl.rounds_to_tighten_into(1) == 3           # measured: 5x
    assert ctl.rounds_to_tighten_into(3) == 1           # a looser knob is never "tighter"
    with pytest.raises(ValueError, match="unvisited_ratio=0.5: a tighter knob sends"):
        ControllerConfig(unvisited_ratio=0.5)


def test_undo_ratio_undoes_a_tighten_that_brought_the_loss_within_target():
    # DGC's shape: ~1.0 at sparsity 0.99 for a round, 0.07 at 0.95 (within the 0.1 target but
    # above low_ratio x target): the default holds the 2.4x costlier knob, undo_ratio 1 undoes it
    grid = (0.9, 0.95, 0.99)

    def knobs(**cfg):
        ctl = KnobController(grid, ControllerConfig(target=0.1, double_step_ratio=10.0, **cfg),
                             index=2)
        return [ctl.update(e, 0).knob for e in (0.98, 0.07, 0.07)]

    assert knobs() == [0.95, 0.95, 0.95]
    assert knobs(undo_ratio=1.0) == [0.95, 0.99, 0.99]
    with pytest.raises(ValueError, match="undo_ratio=2: give a fraction of the target"):
        ControllerConfig(undo_ratio=2)
