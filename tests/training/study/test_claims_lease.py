"""Leases: a claim whose heartbeat is older than its lease is stale whatever its host; the
holder's heartbeat keeps it alive; exactly one of several racing drivers takes a stale one over."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.study import claims as claims_mod
from training.study.claims import Heartbeat, Lease, fs_now, read_claim, release, renew, try_claim

ROOT = Path(__file__).resolve().parents[3]


def _foreign(runs: Path, run_id: str, age_s: float, lease_s: float | None = None) -> Path:
    """A claim of another host, last renewed ``age_s`` ago (by the filesystem's clock)."""
    runs.mkdir(parents=True, exist_ok=True)
    doc = {"host": "node7", "pid": 4242, "time": 0.0}
    if lease_s is not None:
        doc["lease_s"] = lease_s
    path = runs / f"{run_id}.claim"
    path.write_text(json.dumps(doc))
    beat = fs_now(runs) - age_s
    os.utime(path, (beat, beat))
    return path


def _eventually(check, timeout_s: float = 60.0) -> bool:
    """Poll ``check`` until true (a generous bound: the machine may be loaded)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_a_foreign_claim_with_a_fresh_heartbeat_is_honoured(tmp_path):
    runs = tmp_path / "runs"
    _foreign(runs, "abc", age_s=60)                  # default lease: 600 s
    held = read_claim(runs, "abc")
    assert not held.stale and 50 < held.age_s < 70
    assert not try_claim(runs, "abc")
    assert read_claim(runs, "abc").host == "node7"
    assert "node7 pid 4242 since " in held.where() and "heartbeat 60s ago" in held.where()


def test_a_foreign_claim_with_an_old_heartbeat_is_taken_over(tmp_path):
    runs = tmp_path / "runs"
    _foreign(runs, "abc", age_s=601)
    held = read_claim(runs, "abc")
    assert held.stale and "lease expired 1s ago" in held.where()
    assert try_claim(runs, "abc", Lease(120, 5))
    mine = read_claim(runs, "abc")
    assert mine.mine and mine.lease_s == 120 and not mine.stale
    assert not (runs / "abc.takeover").exists()


def test_the_holders_lease_decides(tmp_path):
    runs = tmp_path / "runs"
    _foreign(runs, "short", age_s=30, lease_s=20)    # the holder promised a beat every <20 s
    _foreign(runs, "long", age_s=30, lease_s=3600)
    _foreign(runs, "bogus", age_s=30, lease_s=-1)    # unusable: the default lease (600 s)
    assert [try_claim(runs, r) for r in ("short", "long", "bogus")] == [True, False, False]


def test_a_renewed_claim_is_not_taken_over_by_a_driver_that_read_it_before(tmp_path):
    runs = tmp_path / "runs"
    path = _foreign(runs, "abc", age_s=601)
    seen = read_claim(runs, "abc")
    os.utime(path)                                   # its driver renews it meanwhile
    assert not claims_mod._take_over(runs, seen, Lease())
    assert read_claim(runs, "abc").host == "node7"


def test_renew_refreshes_only_this_drivers_claims(tmp_path):
    runs = tmp_path / "runs"
    assert try_claim(runs, "mine")
    old = fs_now(runs) - 500
    os.utime(runs / "mine.claim", (old, old))
    _foreign(runs, "theirs", age_s=500)
    assert renew(runs) == ["mine"]
    assert read_claim(runs, "mine").age_s < 60 and read_claim(runs, "theirs").age_s > 400


def test_the_heartbeat_thread_renews_until_stopped(tmp_path):
    runs = tmp_path / "runs"
    assert try_claim(runs, "abc")
    path = runs / "abc.claim"
    with Heartbeat(runs, Lease(lease_s=1.0, renew_s=0.01)) as beat:
        old = fs_now(runs) - 500
        os.utime(path, (old, old))
        assert _eventually(lambda: read_claim(runs, "abc").age_s < 60)
    assert not beat._thread.is_alive()
    os.utime(path, (old, old))
    time.sleep(0.1)                                  # ten missed beats: nobody renews now
    assert read_claim(runs, "abc").age_s > 400
    release(runs, "abc")


@pytest.mark.parametrize(("lease", "renew", "message"), [
    (600, 0, "renew_s must be a positive number"),
    (600, float("nan"), "renew_s must be a positive number"),
    (100, 30, "at least 4x renew_s"),
    (float("inf"), 30, "at least 4x renew_s"),
])
def test_a_lease_says_how_to_fix_it(lease, renew, message):
    with pytest.raises(ValueError, match=message):
        Lease(lease, renew)


def test_the_lease_comes_from_the_environment():
    assert Lease.from_env({}) == Lease(600, 30)
    assert Lease.from_env({"STUDY_LEASE_S": "60"}) == Lease(60, 3)
    assert Lease.from_env({"STUDY_LEASE_S": "60", "STUDY_LEASE_RENEW_S": "10"}) == Lease(60, 10)
    with pytest.raises(ValueError, match="STUDY_LEASE_S and STUDY_LEASE_RENEW_S must be"):
        Lease.from_env({"STUDY_LEASE_S": "ten minutes"})
    with pytest.raises(ValueError, match="at least 4x"):
        Lease.from_env({"STUDY_LEASE_S": "60", "STUDY_LEASE_RENEW_S": "30"})


def _race(runs: Path, run_ids: list[str], start, done, won) -> None:
    start.wait()
    for run_id in run_ids:
        if try_claim(runs, run_id):
            won.put(run_id)
    done.wait()             # stay alive (holding the claims) until every racer is through


def test_racing_drivers_take_a_stale_claim_over_exactly_once(tmp_path):
    runs = tmp_path / "runs"
    run_ids = [f"run{i:02d}" for i in range(40)]
    for run_id in run_ids:
        _foreign(runs, run_id, age_s=601)
    ctx = multiprocessing.get_context("fork")
    racers = 4
    start, done, won = ctx.Barrier(racers), ctx.Barrier(racers + 1), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(runs, run_ids, start, done, won))
             for _ in range(racers)]
    for p in procs:
        p.start()
    done.wait()
    winners = [won.get(timeout=60) for _ in range(won.qsize())] if won.qsize() else []
    for p in procs:
        p.join(timeout=60)
    assert sorted(winners) == run_ids                # each run won once, by one racer
    assert {read_claim(runs, r).pid for r in run_ids} <= {p.pid for p in procs}
    assert not list(runs.glob("*.takeover"))


DRIVER = """
import sys, time
from pathlib import Path
from training.study.claims import Heartbeat, Lease, try_claim
runs = Path(sys.argv[1])
assert try_claim(runs, "abc")
Heartbeat(runs, Lease(lease_s=600, renew_s=0.02)).start()
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_killed_drivers_claim_is_takeable_after_its_lease(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(runs)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "claimed"
        monkeypatch.setattr(claims_mod, "HOST", "another-host")   # we look from elsewhere
        assert not try_claim(runs, "abc")                          # alive: honoured
        old = fs_now(runs) - 601
        os.utime(runs / "abc.claim", (old, old))                   # as if 10 minutes passed...
        assert _eventually(lambda: read_claim(runs, "abc").age_s < 60)   # ...it renewed
        assert not try_claim(runs, "abc")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not try_claim(runs, "abc")              # killed, but its lease still runs
    os.utime(runs / "abc.claim", (old, old))       # the lease runs out with no heartbeat
    assert read_claim(runs, "abc").stale
    assert try_claim(runs, "abc") and read_claim(runs, "abc").host == "another-host"


def test_a_lease_has_a_maximum(monkeypatch):
    with pytest.raises(ValueError, match="over the maximum 86400 s"):
        Lease(lease_s=1e300)
    with pytest.raises(ValueError, match="over the maximum"):
        Lease.from_env({"STUDY_LEASE_S": "1e300"})
    assert Lease(lease_s=claims_mod.MAX_LEASE_S).lease_s == 86400


def test_a_foreign_claim_with_a_huge_lease_still_expires(tmp_path, caplog):
    runs = tmp_path / "runs"
    _foreign(runs, "r1", age_s=claims_mod.MAX_LEASE_S - 100, lease_s=1e300)
    held = read_claim(runs, "r1")
    assert held.lease_s == claims_mod.MAX_LEASE_S and not held.stale
    assert "asks a lease of 1e+300s: held at most 86400s" in caplog.text
    _foreign(runs, "r1", age_s=claims_mod.MAX_LEASE_S + 100, lease_s=1e300)
    assert read_claim(runs, "r1").stale
    assert try_claim(runs, "r1") and read_claim(runs, "r1").mine


@pytest.mark.parametrize("doc", [{"host": "node7", "pid": 10**30, "time": 0.0},
                                 {"host": "node7", "pid": 4242, "time": 1e400},
                                 {"host": ["x"], "pid": 4242, "time": 0.0},
                                 {"host": "node7", "pid": "4242", "time": 0.0}, [1, 2]])
def test_a_claim_that_is_not_one_reads_as_abandoned_mid_write(doc, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "r1.claim").write_text(json.dumps(doc))
    held = read_claim(runs, "r1")
    assert (held.host, held.pid, held.lease_s) == ("?", -1, claims_mod.TAKEOVER_LOCK_TIMEOUT_S)
    assert held.where()          # printable (by --list) whatever the file held


def test_a_directory_in_a_claims_place_is_moved_aside_and_the_run_claimed(tmp_path, caplog):
    runs = tmp_path / "runs"
    (runs / "r1.claim").mkdir(parents=True)
    assert try_claim(runs, "r1") and read_claim(runs, "r1").mine
    assert (runs / "r1.claim.invalid-0").is_dir()
    assert f"{runs / 'r1.claim'} is a directory where a file belongs" in caplog.text
