"""The Flower app in examples/flower_continents: its ClientApp functions directly, and the whole
app through ``flwr run`` in Flower's simulation runtime (a local SuperLink on free 127.0.0.1 ports,
its home in a temporary folder, stopped afterwards)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "examples" / "flower_continents"
VAL = {"1005", "1008", "1010"}   # one held-out photo per continent


@pytest.fixture(scope="module")
def app_modules():
    """The app's package, imported from its folder as Flower does (no top-level ``examples``)."""
    sys.path.insert(0, str(APP))
    try:
        from flower_continents import client_app, task
        yield client_app, task
    finally:
        sys.path.remove(str(APP))


@pytest.fixture(scope="module")
def geo_build(tmp_path_factory) -> Path:
    from tests.flickr_mammal.geo_samples import write_geo_shards

    return write_geo_shards(tmp_path_factory.mktemp("geo_build"), val=VAL)


def _context(partition_id: int, data_dir: Path) -> Context:
    run_config = {"data-dir": str(data_dir), "seed": 0, "lr": 0.05, "local-epochs": 1}
    return Context(run_id=1, node_id=partition_id + 1, state=RecordDict(), run_config=run_config,
                   node_config={"partition-id": partition_id, "num-partitions": 3})


def _message(kind: str, net) -> Message:
    content = RecordDict({"arrays": ArrayRecord(net.state_dict()),
                          "config": ConfigRecord({"lr": 0.05, "server-round": 1})})
    return Message(content, dst_node_id=1, message_type=kind)


def test_client_trains_on_its_continent_and_evaluates_held_out(app_modules, geo_build,
                                                                monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    client_app, task = app_modules
    monkeypatch.setattr(TaskIdentity, "_run_id", 1)   # what Flower's runtime sets
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    torch.manual_seed(0)
    start = task.Net()
    reply = client_app.client_train(_message("train", start), _context(0, geo_build))
    assert reply.content["metrics"]["num-examples"] == 4      # Africa's train photos
    trained = reply.content["arrays"].to_torch_state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in start.state_dict().items())
    reply = client_app.client_evaluate(_message("evaluate", start), _context(2, geo_build))
    assert reply.content["metrics"]["num-examples"] == 1      # Oceania's held-out photo
    assert 0.0 <= reply.content["metrics"]["eval_acc"] <= 1.0


def test_client_without_a_data_dir_says_how_to_set_it(app_modules):
    client_app, _ = app_modules
    with pytest.raises(ValueError, match="data-dir"):
        client_app.partitions("", "train")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_processes_mentioning(text: str) -> None:
    """The local SuperLink ``flwr run`` started, and its children (found via /proc)."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.add(int(proc.name))
            except OSError:
                continue
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.killpg(pid, sig) if os.getpgid(pid) == pid else os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(1)


@pytest.mark.slow
def test_flwr_run_trains_fedavg_over_the_continents(geo_build, tmp_path):
    home, out = tmp_path / "flwr-home", tmp_path / "result.json"
    env = {**os.environ, "FLWR_HOME": str(home), "HOME": str(tmp_path), "OMP_NUM_THREADS": "1",
           "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(_free_port()),
           "FLWR_LOCAL_CONTROL_API_PORT": str(_free_port())}
    flwr = Path(sys.executable).with_name("flwr")
    try:
        proc = subprocess.run(
            [str(flwr), "run", ".", "--stream",
             "--run-config", f'data-dir="{geo_build}" num-server-rounds=2 out="{out}"',
             "--federation-config", "num-supernodes=3"],
            cwd=APP, env=env, capture_output=True, text=True, timeout=600)
    finally:
        _stop_processes_mentioning(str(home))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    result = json.loads(out.read_text())
    assert result["partition_ids"] == {"0": "Africa", "1": "Europe", "2": "Oceania"}
    assert sorted(result["train"]) == sorted(result["evaluate"]) == ["1", "2"]
    assert all(0.0 <= m["eval_acc"] <= 1.0 for m in result["evaluate"].values())
