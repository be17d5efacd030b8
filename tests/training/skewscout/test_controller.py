"""The controller's rule 6 (no loosening in late learning-rate phases) on scripted estimate
sequences: the FedAvg-at-100%-non-IID shape (high estimates at the full learning rate, estimates
that collapse after each decay whatever the skew) and the cases it must not change."""

from __future__ import annotations

import pytest

from training.engine import TrainConfig
from training.skewscout.controller import ControllerConfig, KnobController
from training.skewscout.scout import SkewScout, SkewScoutConfig

GRID = (5.0, 10.0, 50.0, 200.0)   # FedAvg IterLocal, most -> least communication

# Phase 0: the loss is real (0.9) -> tighten to IterLocal 5 and hold there; after each decay the
# estimates collapse to ~0 although the skew has not changed.
PHASES = ([0.9, 0.9, 0.12, 0.11], [0.0, 0.01, 0.0, 0.02], [0.0, 0.0, 0.01])


def run_phases(phases, **cfg):
    cfg = ControllerConfig(target=0.1, patience=2, double_step_ratio=10.0, **cfg)
    ctl = KnobController(GRID, cfg, index=2)
    knobs = []
    for p, estimates in enumerate(phases):
        if p:
            ctl.new_phase()
        knobs.append([ctl.update(e, 0).knob for e in estimates])
    return knobs, ctl


def test_without_rule_6_collapsed_estimates_after_a_decay_loosen_the_knob():
    knobs, _ = run_phases(PHASES)
    assert knobs[0][-1] == 5.0
    assert knobs[2][-1] > 10.0          # loosened twice on the post-decay quiet


def test_loosen_phases_1_keeps_the_full_learning_rates_knob_through_the_decays():
    knobs, ctl = run_phases(PHASES, loosen_phases=1)
    assert knobs[1] == [5.0] * 4 and knobs[2] == [5.0] * 3
    assert [d.action for d in ctl.history[4:]] == ["hold"] * 7
    assert ctl.phase == 2 and not ctl.may_loosen


def test_loosen_phases_2_forbids_loosening_only_after_the_last_decay():
    knobs, _ = run_phases(PHASES, loosen_phases=2)
    assert knobs[1][-1] == 50.0           # the middle phase may still loosen (5 -> 10 -> 50)
    assert knobs[2] == [50.0] * 3         # the last one may not


def test_a_frozen_phase_still_tightens_on_a_real_loss():
    knobs, _ = run_phases(([0.0, 0.0], [0.9, 0.9], [0.0, 0.0, 0.0]), loosen_phases=1)
    assert knobs[0] == [50.0, 200.0]      # loosened in phase 0 (patience 2)
    assert knobs[1] == [50.0, 10.0]       # tightened after the decay
    assert knobs[2] == [10.0] * 3         # and never loosened again


def test_a_frozen_phase_does_not_undo_a_tighten_at_once():
    # rule 3 undoes a tighten on one quiet round; in a frozen phase that too is a loosen
    knobs, _ = run_phases(([0.05], [0.9, 0.0, 0.0]), loosen_phases=1)
    assert knobs[1] == [10.0, 10.0, 10.0]


def test_loosen_phases_0_never_loosens_and_none_is_the_old_rule():
    knobs, ctl = run_phases(([0.0, 0.0, 0.0],), loosen_phases=0)
    assert knobs[0] == [50.0] * 3 and not ctl.loosen_pending
    assert run_phases(([0.0, 0.0],), loosen_phases=None)[0][0] == [50.0, 200.0]


def test_loosen_phases_validation_says_how_to_fix():
    with pytest.raises(ValueError, match="loosen_phases=-1: give a phase count"):
        ControllerConfig(loosen_phases=-1)


class ScriptedHost:
    """Just enough of a ScoutHost for the callback's phase bookkeeping (no model travels)."""

    def __init__(self):
        self.config = TrainConfig(iterations=100, lr_milestones=(0.5, 0.75))
        self.iteration = 0


def test_skewscout_counts_one_phase_per_learning_rate_decay():
    scout = SkewScout(GRID, SkewScoutConfig(ControllerConfig(loosen_phases=1),
                                            travel_interval=1000, jitter=False))
    host = ScriptedHost()
    scout.knob_trace.append((0, scout.initial_knob))    # the knob was set; skip set_knob
    for it in range(100):
        host.iteration = it
        scout(host)
    assert scout.controller.phase == 2 and not scout.controller.may_loosen


@pytest.mark.parametrize("name, seeds", [("digits_skewscout_heldout.toml", (4, 5, 6, 7, 8, 9)),
                                         ("digits_skewscout_fresh.toml", tuple(range(22, 28)))])
def test_each_held_out_config_is_the_tuning_config_on_its_own_seeds(name, seeds):
    from dataclasses import replace

    from training.study.config import DEFAULT_CONFIG, load_study

    held_out = load_study(DEFAULT_CONFIG.parent / name)
    tuning = load_study(DEFAULT_CONFIG.parent / "digits_skewscout_seeds.toml")
    assert held_out.seeds == seeds and tuning.seeds == (0, 1, 2, 3)
    assert replace(held_out, name=tuning.name, seeds=tuning.seeds) == tuning
    scout_runs = [s for s in held_out.all_runs() if s.mode == "skewscout"]
    assert len(scout_runs) == 3 * 2 * 6          # Gaia, FedAvg, DGC x 80%, 100% x six seeds


def test_start_patience_leaves_the_starting_knob_on_one_quiet_round_and_no_other():
    quiet = [0.0, 0.0, 0.0, 0.0]                       # Gaia at 80% non-IID: ~0 everywhere
    knobs, _ = run_phases((quiet,))
    assert knobs[0] == [50.0, 200.0, 200.0, 200.0]     # patience 2 at the start too
    knobs, _ = run_phases((quiet,), start_patience=1)
    assert knobs[0] == [200.0, 200.0, 200.0, 200.0]    # the start is a guess: one round
    ctl = KnobController((0.02, 0.05, 0.1, 0.2, 0.3),
                         ControllerConfig(target=0.1, patience=2, start_patience=1), index=2)
    assert [ctl.update(e).knob for e in quiet] == [0.2, 0.2, 0.3, 0.3]   # later knobs: 2
    knobs, _ = run_phases(([0.9, 0.0, 0.0, 0.0],), start_patience=1)    # a real loss first
    assert knobs[0] == [10.0, 50.0, 50.0, 200.0]       # undo at once (rule 3), then patience
    with pytest.raises(ValueError, match="start_patience"):
        ControllerConfig(start_patience=0)
