"""Claims: one driver per run; a dead local driver's claim is taken over at once, another host's
after its lease (test_claims_lease.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from training.study.claims import HOST, claims, read_claim, release, try_claim


def _write(runs, run_id, host, pid):
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{run_id}.claim").write_text(json.dumps({"host": host, "pid": pid, "time": 1.0}))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_claim_is_exclusive_and_released(tmp_path):
    runs = tmp_path / "runs"
    assert try_claim(runs, "abc")
    held = read_claim(runs, "abc")
    assert held.host == HOST and held.pid == os.getpid() and held.mine
    assert try_claim(runs, "abc")                        # this process already holds it
    release(runs, "abc")
    assert read_claim(runs, "abc") is None


def test_a_live_drivers_claim_is_honoured(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "abc", HOST, os.getppid())              # a live process of this host
    _write(runs, "def", "another-host", 1)               # cannot be checked: honoured
    assert not try_claim(runs, "abc") and not try_claim(runs, "def")
    release(runs, "abc")                                 # not ours: left alone
    assert set(claims(runs)) == {"abc", "def"}
    assert claims(runs)["def"].where().startswith("another-host pid 1 since ")


def test_a_dead_local_drivers_claim_is_taken_over(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "abc", HOST, _dead_pid())
    assert read_claim(runs, "abc").stale
    assert try_claim(runs, "abc") and read_claim(runs, "abc").mine
    assert not (runs / "abc.takeover").exists()


def test_a_takeover_in_progress_keeps_others_out(tmp_path):
    runs = tmp_path / "runs"
    _write(runs, "abc", HOST, _dead_pid())
    (runs / "abc.takeover").write_text("{}")             # another driver is taking it over
    assert not try_claim(runs, "abc")
    os.utime(runs / "abc.takeover", (0, 0))              # ...and died doing so long ago
    assert try_claim(runs, "abc")


def test_a_claim_being_written_reads_as_held(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "abc.claim").write_text("")                  # created, not yet filled in
    assert not read_claim(runs, "abc").stale and not try_claim(runs, "abc")
    os.utime(runs / "abc.claim", (0, 0))                 # its driver died while writing it
    assert read_claim(runs, "abc").stale and try_claim(runs, "abc")
