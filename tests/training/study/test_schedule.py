"""The driver's loop with leases: a foreign claim with a fresh heartbeat is left to its host, one
with an old heartbeat is taken over and run exactly once, and a long run keeps its claim alive."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import pytest

from tests.training.study.studies import fake_row
from training.study.claims import Lease, fs_now, read_claim
from training.study.config import RunSpec, study_from_dict
from training.study.results import ResultsStore
from training.study.schedule import execute_all

DOC = {
    "name": "tiny", "num_partitions": 2, "threads": 1,
    "dataset": {"name": "digits", "image_size": 8},
    "train": {"iterations": 30, "batch_size": 20, "eval_every": 15},
    "experiments": [{"name": "n", "kind": "noniid", "models": ["gn-lenet"],
                     "algorithms": ["bsp"], "noniid_fractions": [0.0, 0.5, 1.0]}],
}


class CountingBackend:
    """Runs inline (blocking the driver's loop, like ``--jobs 1``), counting each run; ``during``
    is called in each run (the run's "training")."""

    capacity = 1

    def __init__(self, during: Callable[[RunSpec], None] = lambda spec: None) -> None:
        self.ran: Counter[str] = Counter()
        self.during = during

    def submit_many(self, specs: Sequence[RunSpec]) -> list[Future]:
        futures = []
        for spec in specs:
            self.ran[spec.run_id] += 1
            self.during(spec)
            fut: Future = Future()
            fut.set_result({"row": fake_row(spec, 0.5)})
            futures.append(fut)
        return futures

    def close(self) -> None:
        pass


def _specs() -> list[RunSpec]:
    return study_from_dict(DOC).all_runs()


def _foreign_claim(store: ResultsStore, run_id: str, age_s: float) -> None:
    store.runs_dir.mkdir(parents=True, exist_ok=True)
    path = store.runs_dir / f"{run_id}.claim"
    path.write_text(json.dumps({"host": "node7", "pid": 4242, "time": 0.0, "lease_s": 600}))
    beat = fs_now(store.runs_dir) - age_s
    os.utime(path, (beat, beat))


@pytest.mark.timeout(120)
def test_a_run_with_a_fresh_foreign_heartbeat_is_left_to_its_host(tmp_path):
    specs = _specs()
    store = ResultsStore(tmp_path)
    theirs = specs[0].run_id
    _foreign_claim(store, theirs, age_s=60)

    def other_host_finishes(spec: RunSpec) -> None:      # node7 commits its run meanwhile
        if spec is specs[-1]:
            (store.runs_dir / f"{theirs}.json").write_text(json.dumps(fake_row(specs[0], 0.5)))
            (store.runs_dir / f"{theirs}.claim").unlink()

    backend = CountingBackend(other_host_finishes)
    outcome = execute_all(specs, store, backend, desc="t", progress=False)
    assert theirs not in backend.ran and outcome.by_others == 1
    assert outcome.ran == len(specs) - 1


@pytest.mark.timeout(120)   # without leases the driver would wait for node7 for ever
def test_a_run_with_an_old_foreign_heartbeat_is_taken_over_and_run_once(tmp_path):
    specs = _specs()
    store = ResultsStore(tmp_path)
    _foreign_claim(store, specs[1].run_id, age_s=601)     # node7's driver died 10 minutes ago
    backend = CountingBackend()
    outcome = execute_all(specs, store, backend, desc="t", progress=False)
    assert backend.ran == Counter({s.run_id: 1 for s in specs})
    assert outcome.ran == len(specs) and outcome.by_others == 0
    assert set(ResultsStore(tmp_path).rows) == {s.run_id for s in specs}
    assert not list(store.runs_dir.glob("*.claim"))


def test_a_long_run_keeps_its_claim_alive(tmp_path):
    specs = _specs()[:1]
    store = ResultsStore(tmp_path)
    seen: list[float] = []

    def long_run(spec: RunSpec) -> None:
        path = store.runs_dir / f"{spec.run_id}.claim"
        old = fs_now(store.runs_dir) - 601            # as if this run had trained 10 minutes
        os.utime(path, (old, old))
        deadline = time.monotonic() + 60
        while read_claim(store.runs_dir, spec.run_id).stale and time.monotonic() < deadline:
            time.sleep(0.02)                          # the heartbeat thread renews meanwhile
        seen.append(read_claim(store.runs_dir, spec.run_id).age_s)

    backend = CountingBackend(long_run)
    execute_all(specs, store, backend, desc="t", progress=False, lease=Lease(600, 0.01))
    assert len(seen) == 1 and seen[0] < 60
    assert not list(store.runs_dir.glob("*.claim"))
