"""The Flower example: its ClientApp functions directly, and the whole app in the simulation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict  # noqa: E402

from examples.flower_continents.app import client_evaluate, client_train  # noqa: E402
from examples.flower_continents.task import TRANSFORM, Net  # noqa: E402
from flickr_mammal.flower import continent_partitions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _context(partition_id: int) -> Context:
    return Context(run_id=1, node_id=partition_id + 1, state=RecordDict(), run_config={},
                   node_config={"partition-id": partition_id, "num-partitions": 3})


def _message(kind: str, net: Net) -> Message:
    content = RecordDict({"arrays": ArrayRecord(net.state_dict()),
                          "config": ConfigRecord({"lr": 0.05})})
    return Message(content, dst_node_id=1, message_type=kind)


def test_client_trains_and_evaluates_its_continent(geo_shard_dir, monkeypatch):
    from flwr.supercore.task_identity import TaskIdentity

    monkeypatch.setattr(TaskIdentity, "_run_id", 1)   # what Flower's runtime sets
    monkeypatch.setattr(TaskIdentity, "_node_id", 1)
    monkeypatch.setattr(TaskIdentity, "_task_id", 1)
    partitions = continent_partitions(geo_shard_dir, transform=TRANSFORM)
    torch.manual_seed(0)
    start = Net()
    reply = client_train(partitions, _message("train", start), _context(0))
    metrics = reply.content["metrics"]
    assert metrics["num-examples"] == 5                       # Africa's five photos
    trained = reply.content["arrays"].to_torch_state_dict()
    assert any(not torch.equal(trained[k], v) for k, v in start.state_dict().items())
    reply = client_evaluate(partitions, _message("evaluate", start), _context(2))
    assert reply.content["metrics"]["num-examples"] == 2      # Oceania
    assert 0.0 <= reply.content["metrics"]["eval_acc"] <= 1.0


@pytest.mark.slow
def test_simulation_runs_fedavg_over_the_continents(geo_shard_dir, tmp_path):
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-m", "examples.flower_continents.app", str(geo_shard_dir),
         "--rounds", "2", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin",
             "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "partition ids: 0=Africa, 1=Europe, 2=Oceania" in proc.stdout
    result = json.loads(out.read_text())
    assert sorted(result["train"]) == sorted(result["evaluate"]) == ["1", "2"]
    assert all(0.0 <= m["eval_acc"] <= 1.0 for m in result["evaluate"].values())
