"""Claims: which driver is running which run, so that drivers sharing an output folder (on one
machine or on a shared filesystem) split the work and never run one run twice.

A claim is ``runs/ID.claim``, created with O_CREAT | O_EXCL (atomic, also on NFS v3+), holding
the claiming driver's host, pid and time. A claim of a dead process on this host is stale and
is taken over; claims of other hosts are honoured (``run_study --list`` shows them; delete the
file if that host's driver is gone).
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

HOST = socket.gethostname()
TAKEOVER_LOCK_TIMEOUT_S = 60.0     # a takeover that takes longer than this was abandoned


@dataclass(frozen=True)
class Claim:
    run_id: str
    host: str
    pid: int
    time: float

    @property
    def mine(self) -> bool:
        return self.host == HOST and self.pid == os.getpid()

    @property
    def stale(self) -> bool:
        """Held by a process of this host that no longer exists."""
        return self.host == HOST and not _alive(self.pid)

    def where(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.time))
        return f"{self.host} pid {self.pid} since {since}"


def _alive(pid: int) -> bool:
    if pid <= 0:          # no process (kill(0) and kill(-1) would address groups)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:       # someone else's live process
        return True
    return True


def claim_path(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f"{run_id}.claim"


def read_claim(runs_dir: Path, run_id: str) -> Claim | None:
    """The run's claim, or None. A claim being written (empty for an instant) reads as held by
    an unknown live driver, so nobody takes it over; one left unreadable for longer than
    TAKEOVER_LOCK_TIMEOUT_S (its driver died while writing it) reads as stale."""
    path = claim_path(runs_dir, run_id)
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
        return Claim(run_id, str(doc["host"]), int(doc["pid"]), float(doc["time"]))
    except (ValueError, KeyError, TypeError):
        if time.time() - mtime > TAKEOVER_LOCK_TIMEOUT_S:
            return Claim(run_id, HOST, 0, mtime)
        return Claim(run_id, "?", -1, mtime)


def try_claim(runs_dir: Path, run_id: str) -> bool:
    """Claim the run for this process; False when another live driver holds it."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    if _create(claim_path(runs_dir, run_id)):
        return True
    held = read_claim(runs_dir, run_id)
    if held is None:                       # released in between: try once more
        return _create(claim_path(runs_dir, run_id))
    if held.mine:
        return True
    if not held.stale:
        return False
    return _take_over(runs_dir, held)


def release(runs_dir: Path, run_id: str) -> None:
    """Drop this process's claim (left alone when another driver holds it)."""
    held = read_claim(runs_dir, run_id)
    if held is not None and held.mine:
        claim_path(runs_dir, run_id).unlink(missing_ok=True)


def claims(runs_dir: Path) -> dict[str, Claim]:
    """Every current claim in the folder, by run id."""
    out: dict[str, Claim] = {}
    for path in runs_dir.glob("*.claim") if runs_dir.is_dir() else []:
        held = read_claim(runs_dir, path.stem)
        if held is not None:
            out[path.stem] = held
    return out


def _create(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": HOST, "pid": os.getpid(), "time": time.time()}, f)
    return True


def _take_over(runs_dir: Path, stale: Claim) -> bool:
    """Replace a dead driver's claim. Two drivers may find the same stale claim at once: a
    takeover lock (itself O_EXCL) lets one of them in; the other leaves the run to it."""
    lock = runs_dir / f"{stale.run_id}.takeover"
    if not _create(lock):
        try:
            if time.time() - lock.stat().st_mtime < TAKEOVER_LOCK_TIMEOUT_S:
                return False
            lock.unlink(missing_ok=True)       # its owner died mid-takeover
        except FileNotFoundError:
            pass
        if not _create(lock):
            return False
    try:
        again = read_claim(runs_dir, stale.run_id)
        if again is not None and again != stale:    # someone took it over first
            return again.mine
        claim_path(runs_dir, stale.run_id).unlink(missing_ok=True)
        return _create(claim_path(runs_dir, stale.run_id))
    finally:
        lock.unlink(missing_ok=True)
