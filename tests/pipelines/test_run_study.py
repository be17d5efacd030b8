"""`python -m pipelines.run_study CONFIG` end to end on a tiny digits study: runs, resumes,
writes every artefact."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from pipelines.run_study import main
from tests.training.study.studies import changed, experiment, study_doc, toml_text, write_toml

CONFIG = study_doc(
    experiment("noniid", "noniid", ["bsp", "fedavg"], [0.0, 1.0]),
    experiment("norm", "norm", ["bsp"], [0.0, 1.0], models=["bn-lenet", "gn-lenet"]),
    experiment("degree", "skew_degree", ["fedavg"], [0.0, 0.5, 1.0]),
    experiment("scout", "skewscout", ["fedavg"], [1.0]),
    target=0.05, train={"iterations": 12, "batch_size": 20, "eval_every": 6},
    algorithms={"fedavg": {"iter_local": 4}}, grids={"fedavg": [2, 4]},
    skewscout={"travel_interval": 4, "sample_size": 16},
)


def test_runs_resumes_and_writes_every_artefact(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    write_toml(cfg, CONFIG)
    out = tmp_path / "out"
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # noniid 4 + norm 2 new (bn-lenet) + degree 1 new (0.5) + scout 2 new (grid 2, SkewScout)
    assert "9 runs now, 0 already done" in printed
    assert "## Findings" in printed and ("holds" in printed)
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 9 and len({r["run_id"] for r in rows}) == 9
    scout = next(r for r in rows if r["mode"] == "skewscout")
    assert scout["travel_bytes"] > 0 and scout["knob_trace"][0][0] == 0
    for r in rows:
        assert r["iterations"] == 12 and 0.0 <= r["final_acc"] <= 1.0 and len(r["bytes_sent"]) == 2
        # bytes sent so far (per partition) at each evaluation, ending at the run's total
        assert [i for i, _ in r["bytes_curve"]] == [i for i, _ in r["curve"]] == [6, 12]
        assert r["bytes_curve"][-1][1] == pytest.approx(12 * r["bytes_per_iteration"])
    assert len(pd.read_csv(out / "results.csv")) == 9
    assert len(pd.read_parquet(out / "results.parquet")) == 9
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["degree_accuracy_vs_skew.png", "noniid_curves.png",
                       "noniid_loss_bars.png", "norm_loss_bars.png", "scout_comm_vs_accuracy.png"]
    summary = (out / "summary.md").read_text()
    assert "## scout (skewscout)" in summary and "**F4**" in summary

    # one row file per run, the same rows as the merged results.json
    assert sorted(p.stem for p in (out / "runs").glob("*.json")) == sorted(
        r["run_id"] for r in rows)

    # Resume: nothing to run; drop one row and exactly that one runs again, same outcome.
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "0 runs now, 9 already done" in capsys.readouterr().out
    dropped = rows.pop()
    (out / "runs" / f"{dropped['run_id']}.json").unlink()
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "1 runs now, 8 already done" in capsys.readouterr().out
    again = {r["run_id"]: r for r in json.loads((out / "results.json").read_text())}
    assert again[dropped["run_id"]]["final_acc"] == dropped["final_acc"]
    assert again[dropped["run_id"]]["bytes_curve"] == dropped["bytes_curve"]

    # A folder of the older layout (results.json only, rows of an older format) is migrated:
    # its rows are kept, the missing one runs.
    shutil.rmtree(out / "runs")
    old_rows = [{k: v for k, v in r.items() if k != "bytes_curve"} for r in rows]
    (out / "results.json").write_text(json.dumps(old_rows))
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "1 runs now, 8 already done" in capsys.readouterr().out
    assert len(list((out / "runs").glob("*.json"))) == 9
    assert len(json.loads((out / "results.json").read_text())) == 9


DIST = study_doc(
    experiment("n", "noniid", ["bsp", "fedavg"], [1.0]),
    experiment("s", "skewscout", ["fedavg"], [1.0]),
    name="dist", engine="simulation",
    # 6 iterations: two traveling rounds (one due at an averaging waits)
    train={"iterations": 6, "batch_size": 20, "eval_every": 2}, grids={"fedavg": [2, 4]},
    skewscout={"travel_interval": 1, "sample_size": 16},
)


@pytest.mark.slow
def test_distributed_engine_matches_simulation(tmp_path):
    """engine = "distributed" launches torchrun (gloo, 127.0.0.1); same rows as simulation,
    SkewScout's (models traveling point to point between the processes) included."""
    outcomes = {}
    for engine in ("simulation", "distributed"):
        cfg = tmp_path / f"{engine}.toml"
        write_toml(cfg, {**DIST, "engine": engine})
        assert main([str(cfg), "--out", str(tmp_path / engine), "--no-progress"]) == 0
        rows = json.loads((tmp_path / engine / "results.json").read_text())
        outcomes[engine] = sorted((r["mode"], r["algorithm"], r["knob"] or 0, r["final_acc"],
                                   r["bytes_per_iteration"], r["travel_bytes"],
                                   json.dumps(r["knob_trace"]), json.dumps(r["estimates"]))
                                  for r in rows)
    assert len(outcomes["distributed"]) == 5       # BSP, FedAvg 50, 2, 4 and SkewScout
    scout = [o for o in outcomes["distributed"] if o[0] == "skewscout"][0]
    assert scout[5] > 0 and len(json.loads(scout[7])) >= 2     # models did travel
    for sim, dist in zip(outcomes["simulation"], outcomes["distributed"], strict=True):
        assert sim[:3] == dist[:3] and sim[4:] == dist[4:], sim
        assert sim[3] == pytest.approx(dist[3], abs=1e-6)


def test_missing_config_is_a_one_line_error(tmp_path, capsys):
    from pipelines.run_study import main as run_main

    assert run_main([str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope.toml" in err and len(err.splitlines()) == 1


def test_a_bad_value_is_a_one_line_error_before_any_run(tmp_path, capsys):
    from pipelines.run_study import main as run_main

    cfg = tmp_path / "bad.toml"
    write_toml(cfg, changed(DIST, "skewscout", patience=0))
    assert run_main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: patience=0") and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()           # nothing ran


@pytest.mark.parametrize("env", [{"STUDY_LEASE_S": "ten"},
                                 {"STUDY_LEASE_S": "20", "STUDY_LEASE_RENEW_S": "10"}])
def test_a_bad_lease_is_a_one_line_error_before_any_run(tmp_path, capsys, monkeypatch, env):
    from pipelines.run_study import main as run_main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cfg = tmp_path / "ok.toml"
    write_toml(cfg, DIST)
    assert run_main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("STUDY_LEASE" in err or "lease_s" in err)
    assert len(err.splitlines()) == 1 and not (tmp_path / "o").exists()


@pytest.mark.parametrize("suffix, text, message", [
    (".toml", toml_text({**CONFIG, "num_partitions": "two"}),
     "error: num_partitions = 'two': must be a whole number"),
    (".toml", toml_text({**CONFIG, "seeds": "12"}),
     "error: seeds = '12': must be a list"),
    (".toml", toml_text({**CONFIG, "experiments": [
        {k: v for k, v in CONFIG["experiments"][0].items() if k != "name"},
        *CONFIG["experiments"][1:]]}), "error: experiments[0] has no name"),
    (".toml", toml_text(changed(CONFIG, "dataset", image_size=0)),
     "error: [dataset] image_size = 0 (digits)"),
    (".yaml", "- 1\n- 2\n", "bad.yaml: a study config is a table of keys"),
    (".yaml", "", "bad.yaml: a study config is a table of keys"),
    (".yaml", "name: [x\n", "is not valid YAML"),
])
def test_a_malformed_config_is_a_one_line_error(tmp_path, capsys, suffix, text, message):
    cfg = tmp_path / f"bad{suffix}"
    cfg.write_text(text)
    assert main([str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_a_failing_run_is_recorded_and_the_others_go_on(tmp_path, capsys, monkeypatch):
    import training.study.run as study_mod

    cfg = tmp_path / "tiny.toml"
    write_toml(cfg, CONFIG)
    out = tmp_path / "out"
    real = study_mod.execute_run

    def broken_fedavg_at_half(spec):
        if spec.algorithm == "fedavg" and spec.noniid_fraction == 0.5:
            raise RuntimeError("out of memory (simulated)")
        return real(spec)

    monkeypatch.setattr(study_mod, "execute_run", broken_fedavg_at_half)
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "1 run(s) failed" in err and "RuntimeError: out of memory (simulated)" in err
    failures = json.loads((out / "failures.json").read_text())
    assert [(f["algorithm"], f["noniid_fraction"]) for f in failures] == [("fedavg", 0.5)]
    assert "broken_fedavg_at_half" in failures[0]["traceback"]    # where it broke
    rows = json.loads((out / "results.json").read_text())
    assert len(rows) == 8 and failures[0]["run_id"] not in {r["run_id"] for r in rows}
    assert "1 run(s) failed and are left out above" in (out / "summary.md").read_text()
    # fixed: a re-run runs just the failed one, and the failure record goes away
    monkeypatch.setattr(study_mod, "execute_run", real)
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "1 runs now, 8 already done" in capsys.readouterr().out
    assert not (out / "failures.json").exists()


def test_list_and_only(tmp_path, capsys):
    cfg = tmp_path / "tiny.toml"
    write_toml(cfg, CONFIG)
    out = tmp_path / "out"
    assert main([str(cfg), "--out", str(out), "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[-1] == f"study tiny: 9 runs, 9 to do -> {out}" and not out.exists()
    assert sum(line.startswith("todo ") for line in listed) == 9
    assert main([str(cfg), "--out", str(out), "--only", "degree", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "3 runs now, 0 already done" in printed
    # it prints what ran: not the tables of experiments that share some of its runs
    assert "\n## degree\n" in printed
    assert "\n## noniid\n" not in printed and "\n## scout\n" not in printed
    # the summary still covers the whole study, from the runs finished so far
    assert "## degree (skew_degree)" in (out / "summary.md").read_text()
    assert "## noniid (noniid)" in (out / "summary.md").read_text()
    assert main([str(cfg), "--out", str(out), "--list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"study tiny: 9 runs, 6 to do -> {out}"
    assert main([str(cfg), "--out", str(out), "--only", "nope"]) == 2
    assert "no experiment nope; known: noniid, norm, degree, scout" in capsys.readouterr().err


def test_a_gpu_study_on_a_machine_without_one_stops_before_any_run(tmp_path, capsys,
                                                                     monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = tmp_path / "gpu.toml"
    write_toml(cfg, changed(CONFIG, "train", device="cuda"))
    assert main([str(cfg), "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    assert "has none; set device = \"cpu\"" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()              # not even the output folder


SMALL = {**CONFIG, "experiments": [experiment("noniid", "noniid", ["bsp"], [0.0, 1.0])]}


def _count_runs(monkeypatch) -> list:
    import training.study.run as study_mod

    ran, real = [], study_mod.execute_run
    monkeypatch.setattr(study_mod, "execute_run", lambda spec: ran.append(spec) or real(spec))
    return ran


@pytest.mark.parametrize("where", ["a_file", "a_file/below"])
def test_an_unwritable_out_stops_before_any_run(where, tmp_path, capsys, monkeypatch):
    ran = _count_runs(monkeypatch)
    cfg = tmp_path / "small.toml"
    write_toml(cfg, SMALL)
    (tmp_path / "a_file").write_text("not a folder")
    assert main([str(cfg), "--out", str(tmp_path / where), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write results to {tmp_path / where}")
    assert len(err.splitlines()) == 1 and ran == []


@pytest.mark.parametrize("text", ["", '[{"run_id": "abc", "final_ac', '{"rows": []}',
                                  '[{"model": "gn-lenet"}]'])
def test_an_unreadable_results_json_is_a_one_line_error(text, tmp_path, capsys, monkeypatch):
    ran = _count_runs(monkeypatch)
    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    out.mkdir()
    (out / "results.json").write_text(text)        # a folder of the older layout
    for extra in (["--list"], ["--no-progress"]):
        assert main([str(cfg), "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {out / 'results.json'} is ") and len(err.splitlines()) == 1
        assert "move it away to redo its runs" in err
    assert ran == [] and (out / "results.json").read_text() == text    # left as it was


def test_a_corrupt_row_file_is_reported_and_its_run_redone(tmp_path, capsys, caplog):
    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    before = {r["run_id"]: r["final_acc"] for r in json.loads((out / "results.json").read_text())}
    broken = sorted((out / "runs").glob("*.json"))[0]
    broken.write_text(broken.read_text()[:40])        # truncated
    capsys.readouterr()
    assert main([str(cfg), "--out", str(out), "--list"]) == 0
    listed = capsys.readouterr().out
    assert f"todo {broken.stem}" in listed and "(its row is invalid: not JSON" in listed
    assert f"{broken} is not a valid result row (not JSON" in caplog.text
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "1 runs now, 1 already done" in capsys.readouterr().out
    after = {r["run_id"]: r["final_acc"] for r in json.loads((out / "results.json").read_text())}
    assert after == before


def test_list_shows_where_a_run_is_running(tmp_path, capsys):
    import socket

    from training.study.config import load_study

    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    first = load_study(cfg).all_runs()[0]
    (out / "runs").mkdir(parents=True)
    (out / "runs" / f"{first.run_id}.claim").write_text(
        json.dumps({"host": "node7", "pid": 4242, "time": 0.0}))
    (out / "runs" / "0123456789ab.error.json").write_text("{}")     # another study's failure
    assert main([str(cfg), "--out", str(out), "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"running {first.run_id} gn-lenet bsp")
    assert "on node7 pid 4242" in lines[0]
    assert lines[1].startswith("todo ") and socket.gethostname() != "node7"


def test_invalid_rows_are_reported_and_their_runs_redone(tmp_path, capsys):
    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    before = json.loads((out / "results.json").read_text())
    nan, folder = sorted((out / "runs").glob("*.json"))
    nan.write_text(json.dumps({**json.loads(nan.read_text()), "final_acc": float("nan")}))
    folder.unlink()
    folder.mkdir()
    capsys.readouterr()
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr()
    assert "2 runs now, 0 already done" in printed.out and "nan" not in printed.out.lower()
    assert "2 result file(s) were not valid rows; their runs were redone:" in printed.err
    assert f"{nan}: final_acc is nan, expected an accuracy in [0, 1]" in printed.err
    assert f"{folder}: a directory, not a row file" in printed.err
    after = json.loads((out / "results.json").read_text())
    assert {r["run_id"]: r["final_acc"] for r in after} == {
        r["run_id"]: r["final_acc"] for r in before}         # redone to the same numbers
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 0
    assert "0 runs now, 2 already done" in capsys.readouterr().out


def test_a_directory_where_the_merged_results_go_is_a_one_line_error(tmp_path, capsys,
                                                                    monkeypatch):
    ran = _count_runs(monkeypatch)
    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    (out / "runs").mkdir(parents=True)
    (out / "results.json").mkdir()
    assert main([str(cfg), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out / 'results.json'} is a directory where the study writes its "
                   "merged results; move it away\n")
    assert ran == []


def test_two_experiments_with_one_name_are_a_one_line_error(tmp_path, capsys):
    cfg = tmp_path / "twice.toml"
    write_toml(cfg, study_doc(experiment("a", "noniid", ["bsp"], [1.0]),
                              experiment("a", "norm", ["bsp"], [1.0])))
    assert main([str(cfg), "--out", str(tmp_path / "o"), "--list"]) == 2
    assert capsys.readouterr().err == ("error: experiment name(s) a used twice; give each "
                                       "[[experiments]] its own name\n")


def test_slurm_without_slurm_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    ran = _count_runs(monkeypatch)
    monkeypatch.setenv("PATH", str(tmp_path))          # no sbatch here
    cfg, out = tmp_path / "small.toml", tmp_path / "out"
    write_toml(cfg, SMALL)
    assert main([str(cfg), "--out", str(out), "--executor", "slurm", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --executor slurm: no SLURM on this machine (no sbatch on PATH)")
    assert len(err.splitlines()) == 1 and ran == [] and not out.exists()


def _executor_of(monkeypatch, tmp_path, doc, *flags):
    """The ExecutorConfig run_study hands to the study for ``doc`` and ``flags``."""
    import pipelines.run_study as cli

    seen = []

    def run_study(study, out, *, executor, **_):
        seen.append(executor)
        raise KeyboardInterrupt          # stop before any run

    monkeypatch.setattr(cli, "run_study", run_study)
    cfg = tmp_path / "tiny.toml"
    write_toml(cfg, doc)
    assert cli.main([str(cfg), "--out", str(tmp_path / "o"), *flags]) == 130
    return seen[0]


def test_executor_flags_override_the_config_only_when_given(monkeypatch, tmp_path):
    from training.study.executors import ExecutorConfig

    doc = {**CONFIG, "executor": {"kind": "slurm", "partition": "gpu", "time_min": 30,
                                  "cluster": "local"}}
    assert _executor_of(monkeypatch, tmp_path, doc) == ExecutorConfig(
        kind="slurm", partition="gpu", time_min=30, cluster="local")
    assert _executor_of(monkeypatch, tmp_path, doc, "--time-min", "5", "--array-parallelism",
                        "8") == ExecutorConfig(kind="slurm", partition="gpu", time_min=5,
                                               cluster="local", array_parallelism=8)
    assert _executor_of(monkeypatch, tmp_path, CONFIG, "--jobs", "2") == ExecutorConfig(jobs=2)


def test_a_field_added_to_executor_config_is_a_flag(monkeypatch, tmp_path):
    from dataclasses import dataclass

    import pipelines.run_study as cli
    from training.study.executors import ExecutorConfig

    @dataclass(frozen=True)
    class Wider(ExecutorConfig):
        queue: str | None = None         # slurm: the queue

    monkeypatch.setattr(cli, "ExecutorConfig", Wider)
    assert _executor_of(monkeypatch, tmp_path, CONFIG, "--queue", "long").queue == "long"
