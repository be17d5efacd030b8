"""Schedule checks at load: every algorithm says what a schedule must give it, and a study warns
about (or, with ``strict = true``, refuses) runs that cannot mean what they claim."""

from __future__ import annotations

import logging

import pytest

from tests.training.study.studies import experiment, study_doc
from training.algorithms import create_algorithm
from training.engine import TrainConfig
from training.study.config import study_from_dict

PHASES_300 = TrainConfig(iterations=300, lr_milestones=(0.5, 0.75)).lr_phases()


def test_lr_phases_follow_the_milestones():
    assert PHASES_300 == [range(0, 150), range(150, 225), range(225, 300)]
    # a milestone at the end, at 0 or twice starts no phase; no decay is one phase
    assert TrainConfig(iterations=10, lr_milestones=(0.5, 0.5, 1.0)).lr_phases() == [
        range(0, 5), range(5, 10)]
    assert TrainConfig(iterations=10, lr_gamma=1.0).lr_phases() == [range(10)]


def test_fedavg_must_average_and_divide_the_iterations():
    def problems(k: int, iterations: int = 300) -> list[str]:
        phases = TrainConfig(iterations=iterations).lr_phases()
        return create_algorithm("fedavg", iter_local=k).schedule_problems(iterations, phases)

    assert problems(50) == [] and problems(300) == []
    [never] = problems(1000)
    assert "iter_local=1000 never averages within 300 iterations" in never and "e.g. 300" in never
    [short] = problems(200)
    assert "does not divide 300 iterations: the last cycle is 100 steps" in short
    assert "e.g. 150" in short and "(e.g. 400)" in short


def test_dgc_must_drain_its_residual_in_every_phase_after_a_decay():
    def problems(sparsity: float, iterations: int = 300, warmup: int = 15) -> list[str]:
        phases = TrainConfig(iterations=iterations, lr_milestones=(0.5, 0.75)).lr_phases()
        dgc = create_algorithm("dgc", sparsity=sparsity, warmup_epoch_iterations=warmup)
        return dgc.schedule_problems(iterations, phases)

    # 75-iteration phases at 99.9%: 0.075 model-equivalents; the authors' 16,000: 16
    [drain] = problems(0.999)
    assert "sends 0.08 model-equivalents" in drain and "iterations 150-224" in drain
    assert "sparsity <= 0.9867" in drain
    assert problems(0.98) == []                       # 75 x 2% = 1.5 model-equivalents
    assert problems(0.999, iterations=64_000, warmup=1000) == []
    assert problems(0.999, iterations=4000) == []     # 1000-iteration phases: exactly one
    # the warm-up outlasts the run: the knob is never in force
    [never] = problems(0.9999, warmup=1000)
    assert "sparsity=0.9999 is never in force" in never
    # no decay, nothing held across one
    dgc = create_algorithm("dgc", sparsity=0.999, warmup_epoch_iterations=15)
    assert dgc.schedule_problems(300, [range(300)]) == []


def test_bsp_and_gaia_need_nothing_of_a_schedule():
    for name in ("bsp", "gaia"):
        assert create_algorithm(name).schedule_problems(3, [range(1), range(1, 3)]) == []


DOC = study_doc(experiment("n", "noniid", ["bsp", "fedavg", "dgc"], [0.0, 1.0]),
                experiment("s", "skewscout", ["fedavg"], [1.0]),
                train={"iterations": 300}, grids={"fedavg": [5, 50, 200]},
                algorithms={"fedavg": {"iter_local": 50},
                            "dgc": {"sparsity": 0.9, "warmup_epoch_iterations": 15}})


def test_a_study_warns_naming_the_runs_and_the_fix(caplog):
    with caplog.at_level(logging.WARNING, logger="training.study.config"):
        study = study_from_dict(DOC)
    [problem] = study.schedule_problems()
    assert problem.algorithm == "fedavg" and problem.experiments == ["s"]
    [run] = problem.runs.values()
    assert run.knob == 200
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("study tiny: fedavg: iter_local=200 does not divide 300 iterations")
    assert f"1 run(s) in s, e.g. run {run.run_id}: gn-lenet 100% non-IID N=2 seed 0" in line


def test_a_strict_study_refuses_and_a_sound_one_loads_quietly(caplog):
    with pytest.raises(ValueError, match=r"strict = true and 1 run setting\(s\) cannot mean "
                                         r"what they claim: fedavg: iter_local=200"):
        study_from_dict({**DOC, "strict": True})
    sound = {**DOC, "strict": True, "grids": {"fedavg": [5, 50, 300]}}
    with caplog.at_level(logging.WARNING, logger="training.study.config"):
        assert study_from_dict(sound).schedule_problems() == []
    assert not caplog.records
    with pytest.raises(ValueError, match="strict = 'yes': must be true or false"):
        study_from_dict({**DOC, "strict": "yes"})


def test_every_run_setting_is_checked_once_across_experiments():
    doc = {**DOC, "algorithms": {**DOC["algorithms"], "dgc": {"sparsity": 0.999}}}
    problems = {p.algorithm: p for p in study_from_dict(doc).schedule_problems()}
    dgc = problems["dgc"]    # the 0.999 runs at 0% and 100% of experiment n, once each
    assert dgc.experiments == ["n"] and len(dgc.runs) == 2


def test_a_default_knob_and_its_explicit_value_are_one_entry():
    # experiment n's FedAvg takes the default IterLocal (50); the grid names 50: one warning
    doc = study_doc(experiment("n", "noniid", ["bsp", "fedavg"], [1.0]),
                    experiment("s", "skewscout", ["fedavg"], [1.0]),
                    train={"iterations": 10}, grids={"fedavg": [5, 50]})
    [problem] = study_from_dict(doc).schedule_problems()
    assert problem.experiments == ["n", "s"] and len(problem.runs) == 2
