"""Per-experiment overrides (training/study/config.py Experiment): partitioner,
partitioner_params, train and sweep reach the runs, are checked at load with one-line errors,
and leave the run ids of experiments without them as they were."""

from __future__ import annotations

import hashlib

import pytest

from tests.training.study.studies import experiment, study_doc
from training.study.config import DEFAULT_CONFIG, load_study, study_from_dict
from training.study.run import execute_run

TRAIN = {"iterations": 10, "eval_every": 5}
ALGOS = {"fedavg": {"iter_local": 5}}


def with_keys(exp: dict, **keys) -> dict:
    return {**exp, **keys}


def doc(*experiments: dict, **keys) -> dict:
    return study_doc(*experiments, **{"train": TRAIN, "algorithms": ALGOS, **keys})


PLAIN = experiment("plain", "noniid", ["bsp", "fedavg"], [0.0, 1.0])


def test_overrides_reach_the_runs_and_the_rest_keeps_the_studys():
    study = study_from_dict(doc(
        PLAIN,
        with_keys(experiment("dir", "baselines", ["fedavg"], [1.0], models=["bn-lenet"]),
                  partitioner="dirichlet", partitioner_params={"alpha": 0.1},
                  train={"norm_stats": "fixbn", "lr_milestones": [0.5]},
                  sweep={"fedavg": [1, 5, 10]})))
    plain, dirichlet = (study.runs(e) for e in study.experiments)
    assert {(s.partitioner, str(s.partitioner_params)) for s in plain} == {("label_skew", "{}")}
    assert all(s.train == TRAIN for s in plain)
    assert [s.knob for s in dirichlet] == [1, 5, 10]
    for spec in dirichlet:
        assert spec.partitioner == "dirichlet" and spec.partitioner_params == {"alpha": 0.1}
        # merged over the study's [train]; milestones a tuple, as TrainConfig takes them
        assert spec.train == {**TRAIN, "norm_stats": "fixbn", "lr_milestones": (0.5,)}
    # the run at the study's knob is the same run in both experiments' terms: one id
    assert dirichlet[1].algorithm_params == {"iter_local": 5}


def test_an_experiment_partitioner_without_params_gets_none_of_the_studys():
    study = study_from_dict(doc(
        PLAIN, with_keys(experiment("iid", "noniid", ["bsp"], [0.0, 1.0]), partitioner="shards",
                         partitioner_params={"shards_per_partition": 2}),
        with_keys(experiment("alpha", "noniid", ["bsp"], [1.0]), partitioner_params={"alpha": 1.0}),
        partitioner="dirichlet", partitioner_params={"alpha": 0.5}))
    plain, shards, alpha = (study.runs(e)[-1] for e in study.experiments)
    assert (plain.partitioner, plain.partitioner_params) == ("dirichlet", {"alpha": 0.5})
    assert (shards.partitioner, shards.partitioner_params) == ("shards",
                                                               {"shards_per_partition": 2})
    assert (alpha.partitioner, alpha.partitioner_params) == ("dirichlet", {"alpha": 1.0})
    other = study_from_dict(doc(PLAIN, with_keys(experiment("p", "noniid", ["bsp"], [1.0]),
                                                 partitioner="label_skew"),
                                partitioner="dirichlet", partitioner_params={"alpha": 0.5}))
    assert other.runs(other.experiments[1])[0].partitioner_params == {}


def test_run_ids_of_experiments_without_overrides_are_unchanged():
    # the default study's 99 run ids (its [skewscout] table included), unchanged by the overrides
    ids = sorted(s.run_id for s in load_study(DEFAULT_CONFIG).all_runs())
    assert len(ids) == 99
    assert hashlib.sha1("".join(ids).encode()).hexdigest()[:12] == "2e1a061e1331"
    alone = study_from_dict(doc(PLAIN))
    beside = study_from_dict(doc(PLAIN, with_keys(
        experiment("fix", "noniid", ["fedavg"], [1.0], models=["bn-lenet"]),
        train={"norm_stats": "fixbn"}, partitioner="dirichlet", partitioner_params={"alpha": 1})))
    assert [s.run_id for s in alone.all_runs()] == [s.run_id for s in beside.runs(
        beside.experiments[0])]
    # an override equal to the study's value computes the same runs: the same ids
    same = study_from_dict(doc(PLAIN, with_keys(PLAIN, name="again", train={"iterations": 10},
                                                partitioner="label_skew")))
    first, again = (tuple(s.run_id for s in same.runs(e)) for e in same.experiments)
    assert first == again and len(same.all_runs()) == len(first)


@pytest.mark.parametrize("override, message", [
    ({"partitioner": "dirichlett"}, r"experiment\(s\) 'e': unknown partitioner 'dirichlett'"),
    ({"partitioner": "dirichlet"}, r"experiment\(s\) 'e': partitioner 'dirichlet' .*'alpha'"),
    ({"partitioner": 3}, "experiment 'e': partitioner = 3: must be a string"),
    ({"partitioner_params": "alpha"}, "experiment 'e': partitioner_params = 'alpha': must be a "
                                      "table"),
    ({"train": {"iteratons": 5}}, "experiment 'e': train: .*'iteratons'"),
    ({"train": {"norm_stats": "fixed"}}, "experiment 'e': train: norm_stats='fixed'; choose one"),
    ({"train": {"norm_stats": "fixbn"}},
     "experiment 'e': train norm_stats = \"fixbn\": experiment 'e' trains 'gn-lenet', which has "
     "no BatchNorm"),
    ({"train": 5}, "experiment 'e': train = 5: must be a table"),
    ({"sweep": {"gaia": [0.1]}}, "experiment 'e': sweep gaia: not one of its algorithms"),
    ({"sweep": {"bsp": [1]}}, "experiment 'e': sweep bsp: no knob to sweep"),
    ({"sweep": {"fedavg": 5}}, r"experiment 'e': sweep fedavg = 5: give a list of knob values"),
    ({"sweep": {"fedavg": []}}, r"sweep fedavg = \[\]: give a list of knob values"),
    ({"sweep": {"fedavg": [0]}}, "experiment 'e': sweep fedavg = 0: "),
])
def test_a_bad_override_is_one_line_naming_the_experiment(override, message):
    bad = with_keys(experiment("e", "noniid", ["bsp", "fedavg"], [0.0, 1.0]), **override)
    with pytest.raises(ValueError, match=message) as info:
        study_from_dict(doc(PLAIN, bad))
    assert "\n" not in str(info.value)


def test_a_skewscout_experiment_refuses_a_sweep():
    bad = with_keys(experiment("s", "skewscout", ["fedavg"], [1.0]), sweep={"fedavg": [5]})
    with pytest.raises(ValueError, match="a skewscout experiment runs its"):
        study_from_dict(doc(bad))


def test_an_experiments_train_is_what_its_schedule_is_checked_against():
    # the study's 10 iterations suit iter_local=5; the experiment's 12 do not
    bad = with_keys(experiment("long", "noniid", ["fedavg"], [1.0]), train={"iterations": 12})
    with pytest.raises(ValueError, match="iter_local=5 does not divide 12 iterations.* in long"):
        study_from_dict(doc(PLAIN, bad, strict=True))
    study = study_from_dict(doc(PLAIN, with_keys(bad, sweep={"fedavg": [5, 6]})))
    assert {s.knob for s in study.runs(study.experiments[1])} == {5, 6}
    (problem,) = study.schedule_problems()     # 6 divides 12; PLAIN's 5 divides its 10
    assert "iter_local=5 does not divide 12" in problem.message()
    assert problem.experiments == ["long"]


def test_an_override_run_trains():
    study = study_from_dict(doc(with_keys(
        experiment("fix", "baselines", ["fedavg"], [1.0], models=["bn-lenet"]),
        train={"norm_stats": "fixbn", "iterations": 4, "eval_every": 2},
        partitioner="dirichlet", partitioner_params={"alpha": 0.5}, sweep={"fedavg": [2]})))
    (spec,) = study.all_runs()
    row = execute_run(spec)
    assert row["iterations"] == 4 and 0.0 <= row["final_acc"] <= 1.0
    assert row["spec"]["train"]["norm_stats"] == "fixbn" and row["knob"] == 2
