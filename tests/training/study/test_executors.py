"""Studies at scale: runs at once in local processes, on Ray and through submitit give the serial
study's rows; a killed driver resumes; concurrent drivers on one folder share the runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.study.studies import experiment, study_doc, toml_text, write_toml
from training.study.config import study_from_dict
from training.study.executors import ExecutorConfig, LocalBackend
from training.study.runner import run_study

ROOT = Path(__file__).resolve().parents[3]
DOC = study_doc(
    experiment("n", "noniid", ["bsp", "fedavg"], [0.0, 0.5, 1.0]),
    threads=1, train={"iterations": 30, "batch_size": 20, "eval_every": 15},
    algorithms={"fedavg": {"iter_local": 5}},
)
TOML = toml_text(DOC)


def rows_of(out: Path) -> dict[str, dict]:
    """The merged rows, less the one field that depends on the machine's load."""
    rows = json.loads((out / "results.json").read_text())
    return {r["run_id"]: {k: v for k, v in r.items() if k != "wall_time_s"} for r in rows}


@pytest.fixture(scope="module")
def serial(tmp_path_factory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("serial")
    report = run_study(study_from_dict(DOC), out, progress=False,
                       executor=ExecutorConfig(jobs=1))
    assert report.ran == 6 and not report.failures
    return rows_of(out)


def test_the_toml_is_the_doc():
    import tomllib
    assert study_from_dict(tomllib.loads(TOML)) == study_from_dict(DOC)


def test_jobs_2_equals_serial(serial, tmp_path):
    report = run_study(study_from_dict(DOC), tmp_path, progress=False,
                       executor=ExecutorConfig(jobs=2))
    assert report.ran == 6 and rows_of(tmp_path) == serial
    assert not list((tmp_path / "runs").glob("*.claim"))       # every claim released


def test_ray_equals_serial(serial, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        report = run_study(study_from_dict(DOC), tmp_path, progress=False,
                           executor=ExecutorConfig(kind="ray"))
    finally:
        ray.shutdown()
    assert report.ran == 6 and rows_of(tmp_path) == serial


def test_submitit_local_equals_serial(serial, tmp_path):
    pytest.importorskip("submitit")
    report = run_study(study_from_dict(DOC), tmp_path, progress=False,
                       executor=ExecutorConfig(kind="slurm", cluster="local", time_min=10))
    assert report.ran == 6 and not report.failures and rows_of(tmp_path) == serial


def _driver(cfg: Path, out: Path, jobs: int = 1) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "pipelines.run_study", str(cfg), "--out",
                             str(out), "--jobs", str(jobs), "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_killed_driver_resumes_to_the_uninterrupted_result(serial, tmp_path):
    cfg, out = tmp_path / "tiny.toml", tmp_path / "out"
    cfg.write_text(TOML)
    proc = _driver(cfg, out)
    while proc.poll() is None and not list((out / "runs").glob("*[0-9a-f].json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.name for p in (out / "runs").glob("*[0-9a-f].json")}
    assert 1 <= len(finished) < 6        # killed mid-study, with rows already written
    again = _driver(cfg, out)
    stdout, _ = again.communicate(timeout=600)
    assert again.returncode == 0
    assert f"{6 - len(finished)} runs now, {len(finished)} already done" in stdout
    assert rows_of(out) == serial
    assert not list((out / "runs").glob("*.claim"))   # the dead driver's claim was taken over


def test_two_drivers_on_one_folder_share_the_runs(serial, tmp_path):
    cfg, out = tmp_path / "tiny.toml", tmp_path / "out"
    cfg.write_text(TOML)
    drivers = [_driver(cfg, out), _driver(cfg, out)]
    outputs = [d.communicate(timeout=600)[0] for d in drivers]
    assert [d.returncode for d in drivers] == [0, 0], outputs
    ran = [int(o.split(" runs now")[0].rsplit(" ", 1)[-1]) for o in outputs]
    assert sum(ran) == 6                  # each run done once, by one of them
    assert rows_of(out) == serial         # every row kept


@pytest.mark.parametrize("kind, module", [("ray", "ray"), ("slurm", "submitit")])
def test_a_missing_executor_package_is_one_line_naming_its_extra(kind, module, tmp_path,
                                                                 capsys, monkeypatch):
    from pipelines.run_study import main

    monkeypatch.setitem(sys.modules, module, None)       # import fails as if not installed
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TOML)
    assert main([str(cfg), "--out", str(tmp_path / "o"), "--executor", kind]) == 2
    err = capsys.readouterr().err
    assert err == f"error: the {kind} executor needs {module}: pip install " \
                  f"'noniid-quagmire[{kind}]'\n"
    assert not list((tmp_path / "o" / "runs").glob("*.json"))      # nothing ran


def test_the_executor_table_and_the_flags(tmp_path, capsys):
    from pipelines.run_study import main

    cfg = tmp_path / "tiny.toml"
    write_toml(cfg, {**DOC, "executor": {"kind": "slurm", "partition": "gpu", "time_min": 30}})
    study = study_from_dict(__import__("tomllib").loads(cfg.read_text()))
    assert ExecutorConfig.from_table(study.executor, time_min=5) == ExecutorConfig(
        kind="slurm", partition="gpu", time_min=5)
    write_toml(cfg, {**DOC, "executor": {"queue": "gpu"}})
    assert main([str(cfg), "--out", str(tmp_path / "o"), "--list"]) == 2
    assert capsys.readouterr().err.startswith("error: [executor]: unknown key(s) queue; known:")


def test_default_jobs_fit_the_cores_and_the_gpus(monkeypatch):
    import torch

    from training.study.executors import default_jobs

    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)
    study = study_from_dict(DOC)
    specs = study.all_runs()
    assert default_jobs(study, specs) == 8
    assert default_jobs(study_from_dict({**DOC, "threads": 3}), specs) == 2
    assert default_jobs(study_from_dict({k: v for k, v in DOC.items() if k != "threads"}),
                        specs) == 1            # torch's default threads take every core
    dist = study_from_dict({**DOC, "engine": "distributed"})
    assert default_jobs(dist, dist.all_runs()) == 4      # 2 processes per run
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    gpu = study_from_dict({**DOC, "train": {**DOC["train"], "device": "cuda"}})
    assert default_jobs(gpu, gpu.all_runs()) == 3


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ray", "slurm"])
def test_distributed_engine_runs_under_ray_and_submitit(kind, tmp_path):
    """A run with engine = "distributed" is a task that launches torchrun (2 processes)."""
    pytest.importorskip("ray" if kind == "ray" else "submitit")
    doc = {**DOC, "engine": "distributed", "train": {**DOC["train"], "iterations": 6,
                                                     "eval_every": 3},
           "experiments": [{**DOC["experiments"][0], "algorithms": ["fedavg"],
                            "noniid_fractions": [1.0]}]}
    inline = run_study(study_from_dict(doc), tmp_path / "inline", progress=False,
                       executor=ExecutorConfig(jobs=1))
    assert inline.ran == 1 and not inline.failures
    if kind == "ray":
        import ray
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    try:
        report = run_study(study_from_dict(doc), tmp_path / kind, progress=False,
                           executor=ExecutorConfig(kind=kind, cluster="local", time_min=10))
    finally:
        if kind == "ray":
            ray.shutdown()
    assert report.ran == 1 and not report.failures, report.failures
    row = next(iter(rows_of(tmp_path / kind).values()))
    assert row["spec"]["engine"] == "distributed"
    assert rows_of(tmp_path / kind) == rows_of(tmp_path / "inline")


def test_a_gpu_worker_sees_only_its_gpu(monkeypatch):
    import queue

    from training.study.executors import _pin_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2")
    gpus = queue.Queue()
    gpus.put(2)
    _pin_gpu(gpus)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def _children(pid: int) -> set[int]:
    """Live processes whose parent is ``pid`` (from /proc: psutil is not a dependency)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _loaded_torch(pid: int) -> bool:
    try:
        return "libtorch" in (Path("/proc") / str(pid) / "maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_killed_driver_leaves_no_worker_behind(how, tmp_path):
    cfg, out = tmp_path / "long.toml", tmp_path / "out"
    write_toml(cfg, {**DOC, "train": {**DOC["train"], "iterations": 10**6}})   # never ends
    proc = _driver(cfg, out, jobs=2)
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    while proc.poll() is None and time.monotonic() < deadline:
        workers = {p for p in _children(proc.pid) if _loaded_torch(p)}
        if len(workers) >= 2:           # both workers started (the tracker loads no torch)
            break
        time.sleep(0.2)
    assert len(workers) >= 2, proc.communicate()
    children = _children(proc.pid)      # the workers and multiprocessing's resource tracker
    proc.send_signal(how)
    proc.wait(timeout=120)      # not communicate(): a surviving worker holds the pipes open
    deadline = time.monotonic() + 60
    while any(_alive(p) for p in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in children if _alive(p)]
    proc.stdout.close()
    if how == signal.SIGTERM:          # stopped cleanly: claims released, one line said so
        err = proc.stderr.read().strip().splitlines()
        assert proc.returncode == 130 and err[-1].startswith("stopped:"), err
        assert not list((out / "runs").glob("*.claim"))


def test_closing_a_busy_pool_waits_for_its_manager_thread():
    """A busy pool's close returns only after the pool's manager thread is done, so the exit
    hook of concurrent.futures cannot write to a wake-up pipe that thread is closing (the
    stray "OSError: Bad file descriptor" after a SIGTERM's "stopped:" line)."""
    backend = LocalBackend(jobs=2, threads=1, pin_gpus=False)
    backend.futures = [backend.pool.submit(time.sleep, 600) for _ in range(2)]
    deadline = time.monotonic() + 120
    while len(backend.pool._processes) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    manager = backend.pool._executor_manager_thread
    assert manager is not None and manager.is_alive()
    backend.close()
    assert not manager.is_alive()
    assert all(f.done() for f in backend.futures)


def test_executors_are_a_registry(tmp_path, monkeypatch):
    from training.study import executors

    with pytest.raises(ValueError, match="kind='nope'; choose one of local, ray, slurm"):
        ExecutorConfig(kind="nope")
    made = []
    monkeypatch.setitem(executors.EXECUTORS, "mine",
                        lambda cfg, study, specs, out: made.append(cfg.kind) or
                        executors.InlineBackend(None))
    backend = executors.make_backend(ExecutorConfig(kind="mine"), study_from_dict(DOC), [],
                                     tmp_path)
    assert made == ["mine"] and isinstance(backend, executors.InlineBackend)
    assert "mine" in executors.list_executors()
