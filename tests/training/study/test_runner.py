"""Study configs, their expansion into runs, the results store and the computed findings."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.training.study.studies import experiment, fake_row, study_doc, write_toml
from training.study.config import load_study, study_from_dict
from training.study.findings import all_claims, markdown_table, summary_markdown
from training.study.results import ResultsStore

DOC = study_doc(
    experiment("n", "noniid", ["bsp", "fedavg"], [0.0, 1.0]),
    experiment("s", "skewscout", ["fedavg"], [1.0]),
    target=0.05, train={"iterations": 10, "lr_milestones": [0.5]},
    algorithms={"fedavg": {"iter_local": 50}}, grids={"fedavg": [5, 50]},
    skewscout={"travel_interval": 5},
)


def test_expansion_shares_runs_between_experiments():
    study = study_from_dict(DOC)
    n, s = study.experiments
    assert len(study.runs(n)) == 4
    # BSP baseline, grid 5 and 50, SkewScout
    assert [(r.algorithm, r.mode, r.knob) for r in study.runs(s)] == [
        ("bsp", "fixed", None), ("fedavg", "fixed", 5), ("fedavg", "fixed", 50),
        ("fedavg", "skewscout", None)]
    # bsp@1.0 and fedavg(50)@1.0 are needed by both experiments: 4 + 4 - 2 runs in all
    assert len(study.all_runs()) == 6
    scout = study.runs(s)[-1]
    assert scout.skewscout == {"target": 0.05, "travel_interval": 5, "grid": [5, 50]}
    assert scout.train["lr_milestones"] == (0.5,)


def test_run_id_is_stable_and_depends_on_what_is_computed():
    a = study_from_dict(DOC).all_runs()
    b = study_from_dict(DOC).all_runs()
    assert [r.run_id for r in a] == [r.run_id for r in b]
    other = study_from_dict({**DOC, "seeds": [1]}).all_runs()
    assert not {r.run_id for r in a} & {r.run_id for r in other}


def test_toml_and_yaml_give_the_same_study(tmp_path):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(DOC))
    toml = tmp_path / "s.toml"
    write_toml(toml, DOC)
    ids_yaml = [r.run_id for r in load_study(tmp_path / "s.yaml").all_runs()]
    assert ids_yaml == [r.run_id for r in load_study(toml).all_runs()]


def test_shipped_configs_load():
    for name in ("default", "cifar10_tables", "cifar10_skewscout", "cifar10_alexnet",
                 "flickr_mammal_continents", "digits_skewscout_seeds"):
        from training.study.config import DEFAULT_CONFIG
        assert load_study(DEFAULT_CONFIG.parent / f"{name}.toml").all_runs()


def test_the_seeds_config_is_the_default_study_with_more_seeds():
    from dataclasses import replace

    from training.study.config import DEFAULT_CONFIG
    seeds = load_study(DEFAULT_CONFIG.parent / "digits_skewscout_seeds.toml")
    default = load_study()
    assert seeds.seeds == (0, 1, 2, 3) and seeds.experiments[0].noniid_fractions == (1.0, 0.8)
    # SkewScout's start probe and FedAvg's averaging view were chosen on the SkewScout studies
    # (docs/skewscout.md)
    def unprobed(study):
        probe = {"start", "first_travel", "probe_visitor_acc", "disjoint_ceiling"}
        algorithms = {**study.algorithms, "fedavg": {
            k: v for k, v in study.algorithms["fedavg"].items() if k != "visitor_view"}}
        return replace(study, algorithms=algorithms, skewscout={
            k: v for k, v in study.skewscout.items() if k not in probe})

    assert unprobed(replace(seeds, name=default.name, seeds=default.seeds,
                            experiments=default.experiments)) == unprobed(default)


@pytest.mark.parametrize("change, message", [
    ({"engine": "torchrun"}, "choose one of simulation"),
    ({"dataset": {"name": "mnist"}}, "choose one of digits"),
    ({"experiments": [{**DOC["experiments"][0], "kind": "bogus"}]}, "choose one of noniid"),
    ({"experiments": [{**DOC["experiments"][1], "algorithms": ["bsp"]}]}, "baseline"),
    ({"experiments": []}, "no \\[\\[experiments\\]\\]"),
    ({"threads": 0}, "threads=0: give at least 1"),
])
def test_validation_says_how_to_fix(change, message):
    with pytest.raises(ValueError, match=message):
        study_from_dict({**DOC, **change})


EXP_N, EXP_S = DOC["experiments"]


@pytest.mark.parametrize("change, error, message", [
    ({"train": {"iterations": 10, "lr_milestone": [0.5]}}, ValueError,
     r"\[train\]: .*unexpected keyword argument 'lr_milestone'"),
    ({"train": {"iterations": 0}}, ValueError, "iterations"),
    ({"partitioner": "by_colour"}, ValueError, "unknown partitioner 'by_colour'; known:"),
    ({"experiments": [{**EXP_N, "models": ["gn-lenett"]}]}, KeyError,
     "unknown model 'gn-lenett'; known:"),
    ({"algorithms": {"fedavg": {"iterlocal": 5}}}, ValueError,
     r"\[algorithms.fedavg\]: .*'iterlocal'"),
    ({"experiments": [{**EXP_N, "algorithms": ["bsp", "fedsgd"]}]}, ValueError,
     "unknown algorithm 'fedsgd'; known:"),
    ({"grids": {"fedavg": [5, 0]}}, ValueError, "iter_local must be >= 1"),
    ({"skewscout": {"travel_intervals": 5}}, ValueError,
     r"unknown \[skewscout\] keys \['travel_intervals'\]; known: .*'travel_interval'"),
    ({"skewscout": {"travel_dtype": "int8"}}, ValueError, "travel_dtype='int8'"),
    ({"skewscout": {"patience": 0}}, ValueError, "patience=0"),
    ({"skewscout": {"travel_interval": "5"}}, ValueError, r"\[skewscout\]: '<' not supported"),
])
def test_a_bad_value_stops_the_study_at_load_not_mid_run(change, error, message):
    with pytest.raises(error, match=message):
        study_from_dict({**DOC, **change})


def test_a_bad_skewscout_value_is_ignored_without_a_skewscout_experiment():
    # nothing would read it; the study runs the other experiments
    assert study_from_dict({**DOC, "skewscout": {"patience": 0}, "experiments": [EXP_N]})


def test_the_load_check_accepts_external_models_and_algorithms_without_defaults(tmp_path):
    # timm/torchvision names (with or without a norm prefix) are only looked up when built;
    # gaia and dgc have no [algorithms] entry: their defaults and the default grids are used
    doc = {**DOC, "experiments": [
        {**EXP_N, "models": ["gn-timm:resnet18", "torchvision:googlenet", "BN-LeNet"],
         "algorithms": ["bsp", "gaia", "dgc"]},
        {**EXP_S, "algorithms": ["gaia", "dgc"]}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    study = load_study(tmp_path / "s.yaml")
    assert {r.model for r in study.all_runs()} == {"gn-timm:resnet18", "torchvision:googlenet",
                                                   "BN-LeNet", "gn-lenet"}


def test_an_experiment_may_run_at_its_own_number_of_partitions():
    study = study_from_dict({**DOC, "experiments": [{**EXP_N, "num_partitions": [4]}]})
    assert {r.num_partitions for r in study.all_runs()} == {4}


def scripted_rows(study, scout_acc, scout_bytes):
    table = {("bsp", "fixed", None, 0.0): (0.95, 100.0), ("bsp", "fixed", None, 1.0): (0.94, 100.0),
             ("fedavg", "fixed", 50, 0.0): (0.93, 2.0), ("fedavg", "fixed", 50, 1.0): (0.60, 2.0),
             ("fedavg", "fixed", 5, 1.0): (0.92, 20.0),
             ("fedavg", "skewscout", None, 1.0): (scout_acc, scout_bytes)}
    rows = {}
    for spec in study.all_runs():
        acc, b = table[(spec.algorithm, spec.mode, spec.knob, spec.noniid_fraction)]
        rows[spec.run_id] = fake_row(spec, acc, b)
    return rows


PARTS = {"name": "p", "kind": "partitions", "models": ["gn-lenet"],
         "algorithms": ["bsp", "fedavg"], "noniid_fractions": [0.0, 1.0],
         "num_partitions": [2, 4]}


def test_a_partitions_experiment_runs_each_number_of_partitions():
    study = study_from_dict({**DOC, "experiments": [EXP_N, PARTS]})
    runs = study.runs(study.experiments[1])
    assert [(r.num_partitions, r.algorithm, r.noniid_fraction) for r in runs] == [
        (n, a, f) for n in (2, 4) for f in (0.0, 1.0) for a in ("bsp", "fedavg")]
    # the study's own N=2 runs are the noniid experiment's: shared, not run twice
    assert len(study.all_runs()) == 8


@pytest.mark.parametrize("change, message", [
    ({"num_partitions": 4}, r"num_partitions must be a list, e.g. num_partitions = \[4\]"),
    ({"noniid_fractions": 1.0}, "noniid_fractions must be a list"),
    ({"num_partitions": [4]}, "at least 2 num_partitions"),
    ({"noniid_fractions": [0.5, 1.0]}, "list 0.0 and a skewed fraction in noniid_fractions"),
    ({"noniid_fractions": [0.0]}, "list 0.0 and a skewed fraction in noniid_fractions"),
    ({"kind": "noniid"}, "only a partitions experiment compares several num_partitions"),
    ({"num_partitions": [1, 4]}, "must all be >= 2"),
])
def test_a_partitions_experiment_says_what_it_needs(change, message):
    with pytest.raises(ValueError, match=message):
        study_from_dict({**DOC, "experiments": [{**PARTS, **change}]})


def test_more_partitions_are_worse_is_computed_from_the_numbers(tmp_path):
    from training.study.figures import draw_all

    study = study_from_dict({**DOC, "experiments": [PARTS]})
    acc = {("bsp", 0.0): 0.95, ("bsp", 1.0): 0.94, ("fedavg", 0.0): 0.93}
    rows = {}
    for spec in study.all_runs():    # FedAvg under skew: 90% with 2 partitions, 60% with 4
        a = acc.get((spec.algorithm, spec.noniid_fraction),
                    0.9 if spec.num_partitions == 2 else 0.6)
        rows[spec.run_id] = {**fake_row(spec, a, 1.0), "num_partitions": spec.num_partitions}
    claims, tables = all_claims(study, rows)
    t = tables["p"]
    assert t.loc[("gn-lenet", "fedavg"), "N=2 loss"] == pytest.approx(3.0)
    assert t.loc[("gn-lenet", "fedavg"), "N=4 loss"] == pytest.approx(33.0)
    verdict = {c.text: (c.verdict.value, c.evidence) for c in claims}
    # one seed: a rank correlation has no spread to be judged by; BSP's margin (4 points) is
    # below the one-seed floor (the 5-point target)
    state, ev = verdict["gn-lenet: the decentralized algorithms' mean loss grows with the "
                        "number of partitions (Spearman >= 0.8)"]
    assert state == "inconclusive" and ev.startswith("rho 1.00 vs 0.8, 1 seed")
    assert ev.endswith("N=2: +3.0, N=4: +33.0")
    assert verdict["gn-lenet: BSP loses <= 5.0 points at every number of partitions"][0] == (
        "inconclusive")
    assert [p.name for p in draw_all(study, rows, tmp_path)] == ["p_loss_vs_partitions.png"]

    # FedAvg's skewed run at N=4 failed: no trend from one N; BSP judged where it was measured
    failed = [k for k, r in rows.items() if r["algorithm"] == "fedavg"
              and r["num_partitions"] == 4 and r["noniid_fraction"] == 1.0]
    claims, _ = all_claims(study, {k: r for k, r in rows.items() if k not in failed})
    texts = [c.text for c in claims]
    assert not any("grows with the number of partitions" in t for t in texts)
    assert "gn-lenet: BSP loses <= 5.0 points at every number of partitions" in texts
    # only BSP's skewed run at N=4 failed: BSP is judged at N=2, where it was measured (its
    # N=4 loss is NaN); FedAvg's trend still stands
    failed = [k for k, r in rows.items() if r["algorithm"] == "bsp"
              and r["num_partitions"] == 4 and r["noniid_fraction"] == 1.0]
    claims, tables = all_claims(study, {k: r for k, r in rows.items() if k not in failed})
    assert tables["p"]["N=4 loss"].isna().tolist() == [True, False]      # bsp, fedavg
    verdict = {c.text: (c.verdict.value, c.evidence) for c in claims}
    assert verdict["gn-lenet: BSP loses <= 5.0 points at every number of partitions"] == (
        "inconclusive", "N=2: 1.0 vs 5 over 1 seed: margin 4.0 <= the 1-seed floor 5.0")
    assert "N=4" in verdict["gn-lenet: the decentralized algorithms' mean loss grows with the "
                            "number of partitions (Spearman >= 0.8)"][1]


def test_a_partitions_experiment_without_skewed_runs_claims_nothing(tmp_path):
    # every skewed run failed: IID minus IID is no evidence that BSP or anything else holds up
    from training.study.figures import draw_all

    study = study_from_dict({**DOC, "experiments": [PARTS]})
    rows = {s.run_id: {**fake_row(s, 0.9, 1.0), "num_partitions": s.num_partitions}
            for s in study.all_runs() if s.noniid_fraction == 0.0}
    claims, tables = all_claims(study, rows)
    assert claims == [] and tables["p"].empty
    assert draw_all(study, rows, tmp_path) == []


def test_findings_are_computed_from_the_numbers():
    study = study_from_dict(DOC)
    claims, tables = all_claims(study, scripted_rows(study, 0.91, 22.0))
    verdict = {c.text: c.verdict.value for c in claims}
    # one seed: FedAvg's 33-point loss clears the 5-point target by more than the target; BSP's
    # 1-point loss is 4 points under it, not enough without a spread to judge by
    assert verdict["gn-lenet: every decentralized algorithm loses > 5.0 points under label "
                   "skew"] == "holds"
    assert verdict["gn-lenet: BSP loses <= 5.0 points"] == "inconclusive"
    ss = tables["s"].iloc[0]
    assert ss["oracle_knob"] == 5 and ss["vs_oracle"] == pytest.approx(1.1)
    assert ss["saving_vs_bsp"] == pytest.approx(100 / 22, abs=0.01)
    # mid-run accuracy of the Oracle's knob (5) and of SkewScout, from the rows
    assert ss["oracle_acc_at_half"] == pytest.approx(46.0) and ss["skewscout_acc_at_half"] == 45.5
    assert verdict["gn-lenet 100% fedavg: SkewScout sends less than BSP"] == "holds"
    # 3 points under BSP with a 5-point target: 2 points inside it, under the one-seed floor
    assert verdict["gn-lenet 100% fedavg: SkewScout within 1.2x the Oracle (our goal)"] == (
        "inconclusive")
    # SkewScout far below the target (0.80 < 0.94 - 0.05 - 0.05): no claim of equal accuracy
    claims, _ = all_claims(study, scripted_rows(study, 0.80, 10.0))
    verdict = {c.text: c.verdict.value for c in claims}
    assert verdict["gn-lenet 100% fedavg: SkewScout stays within the target of BSP's "
                   "accuracy"] == "does not hold on this data"
    assert verdict["gn-lenet 100% fedavg: SkewScout within 1.5x the Oracle (paper)"] == (
        "does not hold on this data")
    text = summary_markdown(study, claims, tables)
    assert "does not hold on this data" in text and "| model |" in text


def test_results_store_persists_and_resumes(tmp_path):
    study = study_from_dict(DOC)
    spec = study.all_runs()[0]
    store = ResultsStore(tmp_path)
    store.add({**fake_row(spec, 0.9, 1.0), "bytes_sent": [1.0, 2.0], "spec": {"a": 1}})
    assert (tmp_path / "runs" / f"{spec.run_id}.json").exists()     # committed at once
    store.flush()                                                    # merged by the report
    again = ResultsStore(tmp_path)
    assert spec.run_id in again and len(again) == 1
    assert again.get(spec.run_id)["bytes_sent"] == [1.0, 2.0]
    for name in ("results.json", "results.csv", "results.parquet"):
        assert (tmp_path / name).exists()
    import pandas as pd
    flat = pd.read_parquet(tmp_path / "results.parquet")
    assert json.loads(flat["bytes_sent"].iloc[0]) == [1.0, 2.0]


def test_runs_use_the_configured_thread_count_and_restore_it(tmp_path, monkeypatch):
    import torch

    from training.study import run as run_module
    from training.study import runner as study_module

    seen = []

    def fake_execute(spec):
        seen.append(torch.get_num_threads())
        return fake_row(spec, 0.9, 1.0)

    monkeypatch.setattr(run_module, "execute_run", fake_execute)
    monkeypatch.setattr(study_module, "draw_all", lambda *a, **k: [])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        study_module.run_study(study_from_dict({**DOC, "threads": 3}), tmp_path, progress=False)
        assert torch.get_num_threads() == 1  # restored after the runs
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {3}


def test_markdown_table():
    import pandas as pd
    text = markdown_table(pd.DataFrame({"a": [1.5], "b": ["x"]}))
    assert text.splitlines() == ["| a | b |", "|---|---|", "| 1.5 | x |"]


def test_run_study_builds_each_experiment_frame_once(tmp_path, monkeypatch):
    """The claims and the figures share one runs_frame per experiment."""
    from training.study import figures, findings
    from training.study import run as run_module
    from training.study import runner as study_module

    study = study_from_dict(DOC)
    rows = scripted_rows(study, 0.91, 22.0)
    built = []

    def counting_runs_frame(study, exp, rows):
        built.append(exp.name)
        return real_runs_frame(study, exp, rows)

    real_runs_frame = findings.runs_frame
    monkeypatch.setattr(findings, "runs_frame", counting_runs_frame)
    monkeypatch.setattr(figures, "runs_frame", counting_runs_frame, raising=False)
    monkeypatch.setattr(run_module, "execute_run", lambda spec: rows[spec.run_id])
    report = study_module.run_study(study, tmp_path, progress=False)
    assert sorted(built) == ["n", "s"]
    assert sorted(p.name for p in report.figures) == [
        "n_curves.png", "n_loss_bars.png", "s_comm_vs_accuracy.png"]
    assert "| model |" in report.summary_path.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cifar10_tables", "cifar10_skewscout", "cifar10_alexnet"])
def test_the_shipped_cifar10_configs_run(name, tmp_path):
    # every model x algorithm x mode of the GPU configs, 2 iterations on CPU over a fake
    # CIFAR-10 folder: what a user with a GPU runs breaks here first, not hours into a study
    from tests.training.study.shipped_configs import run_every_kind
    from tests.training.test_datasets import write_fake_cifar

    write_fake_cifar(tmp_path, per_batch=20)
    assert run_every_kind(name, {"root": str(tmp_path)}, {"batch_size": 10}) >= 4


def test_missing_device_names_the_cuda_device_this_machine_lacks(monkeypatch):
    from types import SimpleNamespace

    import torch

    from training.study.runner import missing_device

    def specs(*devices):   # None: a [train] table without a device (the CPU default)
        return [SimpleNamespace(train={} if d is None else {"device": d}) for d in devices]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert missing_device(specs(None, "cpu", "cuda", "cuda:0")) is None
    assert "trains on cuda:1 (" in missing_device(specs("cuda:0", "cuda:1"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert missing_device(specs(None, "cpu")) is None
    assert "has none" in missing_device(specs(None, "cuda:0"))


def test_a_run_row_carries_the_wire_figure_beside_the_per_message_one():
    from training.study.run import execute_run

    spec = next(s for s in study_from_dict({**DOC, "num_partitions": 3}).all_runs()
                if s.algorithm == "bsp" and s.mode == "fixed")
    row = execute_run(spec)
    # BSP on 3 partitions: each message goes to the 2 others
    assert row["wire_bytes_per_iteration"] == pytest.approx(2 * row["bytes_per_iteration"])
    assert row["comm_vs_bsp"] == pytest.approx(1.0)
