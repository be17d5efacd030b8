"""The Oracle: least communication among fixed knobs that meet the accuracy target."""

from __future__ import annotations

import pytest

from training.study.oracle import KnobOutcome, select_oracle

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
