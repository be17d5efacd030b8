"""Study configs with FedBN (algorithm "fedbn") and FixBN ([train] norm_stats = "fixbn"): they
load, run, and a combination that cannot mean anything stops at load with one line."""

from __future__ import annotations

import pytest

from tests.training.study.studies import changed, experiment, study_doc
from training.study.config import study_from_dict
from training.study.run import execute_run

FIXBN = {"iterations": 4, "eval_every": 2, "norm_stats": "fixbn", "fixbn_switch": 0.5}


def test_fixbn_and_fedbn_studies_load_and_run():
    fixbn = study_from_dict(study_doc(
        experiment("fix", "norm", ["fedavg"], [1.0], models=["bn-lenet"]),
        train=FIXBN, algorithms={"fedavg": {"iter_local": 2}}))
    fedbn = study_from_dict(study_doc(
        experiment("local", "norm", ["fedbn"], [1.0], models=["bn-lenet"]),
        train={"iterations": 4, "eval_every": 2}, algorithms={"fedbn": {"iter_local": 2}}))
    for study, algorithm in ((fixbn, "fedavg"), (fedbn, "fedbn")):
        (spec,) = [s for s in study.all_runs() if s.algorithm == algorithm]
        row = execute_run(spec)
        assert row["iterations"] == 4 and 0.0 <= row["final_acc"] <= 1.0
    assert spec.algorithm_params == {"iter_local": 2}


@pytest.mark.parametrize("doc, message", [
    (study_doc(experiment("e", "norm", ["bsp"], [1.0], models=["bn-lenet", "gn-lenet"]),
               train=FIXBN),
     "norm_stats = \"fixbn\": experiment 'e' trains 'gn-lenet', which has no BatchNorm"),
    (study_doc(experiment("e", "norm", ["fedbn"], [1.0], models=["bn-lenet"]), train=FIXBN),
     "experiment 'e' runs fedbn, which keeps each partition's own: drop one of them"),
    (changed(study_doc(experiment("e", "norm", ["bsp"], [1.0], models=["bn-lenet"])),
             "train", norm_stats="fixed"), "norm_stats='fixed'; choose one of batch, fixbn"),
    (changed(study_doc(experiment("e", "norm", ["bsp"], [1.0], models=["bn-lenet"])),
             "train", fixbn_switch=1.0), r"fixbn_switch=1.0 must be a fraction"),
])
def test_a_norm_setting_that_cannot_run_stops_at_load(doc, message):
    with pytest.raises(ValueError, match=message) as info:
        study_from_dict(doc)
    assert "\n" not in str(info.value)
