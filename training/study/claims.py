"""Claims: which driver is running which run, so that drivers sharing an output folder (on one
machine or on a shared filesystem) split the work and never run one run twice.

A claim is ``runs/ID.claim``, created with O_CREAT | O_EXCL (atomic, also on NFS v3+), holding
the claiming driver's host, pid, time and lease. The driver renews its claims (a heartbeat: the
file's mtime, stamped every ``Lease.renew_s`` by :class:`Heartbeat`), so a claim is stale when
its heartbeat is older than its lease (its driver is gone, whatever the host: killed, host down,
network cut) or, at once, when it is held by a process of this host that no longer exists.
A stale claim is taken over; exactly one of several drivers racing for it wins.

A claim is checked when read: a lease above ``MAX_LEASE_S`` (a day) counts as that day, so a
claim written with ``lease_s: 1e300`` (or by a driver configured so) still expires; a claim
whose fields are not a host, a pid, a time and a lease reads as held by an unknown driver for
``TAKEOVER_LOCK_TIMEOUT_S`` (as a claim being written does), then is taken over; a directory
where a claim file belongs is moved aside (``ID.claim.invalid-N``, logged) and the run claimed.

Clocks: a claim's age is the filesystem's "now" (the mtime of ``runs/.clock``, touched by this
driver) minus the claim file's mtime, both stamped by the same clock, the file server's on NFS
(writes and utime(NULL) take the server's time). So host clocks need not agree. On a filesystem
whose clients stamp their own time, the hosts' clocks must agree to well within the lease (NTP).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from training.study.results import move_aside

log = logging.getLogger(__name__)

HOST = socket.gethostname()
TAKEOVER_LOCK_TIMEOUT_S = 60.0     # a takeover (or claim being written) this old was abandoned
LEASE_S = 600.0                    # a claim without a heartbeat for this long is stale
MAX_LEASE_S = 86400.0              # no claim holds longer than a day without a heartbeat
MAX_PID = 1 << 22                  # Linux's largest pid_max
LEASE_RENEW_S = 30.0               # how often a driver renews its claims
MIN_LEASE_RATIO = 4.0              # lease >= this x renew: a few late heartbeats lose nothing
FS_CLOCK_REFRESH_S = 60.0          # re-read the filesystem's clock this often
CLOCK_FILE = ".clock"


@dataclass(frozen=True)
class Lease:
    """How long a claim holds without a heartbeat (``lease_s``) and how often its driver renews
    it (``renew_s``). Each claim records its driver's lease, so drivers may differ."""

    lease_s: float = LEASE_S
    renew_s: float = LEASE_RENEW_S

    def __post_init__(self) -> None:
        if not (math.isfinite(self.renew_s) and self.renew_s > 0):
            raise ValueError(f"lease renew_s must be a positive number of seconds, "
                             f"got {self.renew_s}")
        if not (math.isfinite(self.lease_s) and self.lease_s >= MIN_LEASE_RATIO * self.renew_s):
            raise ValueError(f"lease_s ({self.lease_s}) must be at least {MIN_LEASE_RATIO:g}x "
                             f"renew_s ({self.renew_s}) so that late heartbeats do not lose a "
                             "live run's claim; raise lease_s or lower renew_s")
        if self.lease_s > MAX_LEASE_S:
            raise ValueError(f"lease_s ({self.lease_s:g}) is over the maximum {MAX_LEASE_S:g} s "
                             "(a day): a claim of a killed driver would block its run that "
                             "long; give a shorter lease")

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Lease:
        """``STUDY_LEASE_S`` (default 600) and ``STUDY_LEASE_RENEW_S`` (default lease / 20)."""
        try:
            lease = float(env.get("STUDY_LEASE_S", LEASE_S))
            renew = float(env.get("STUDY_LEASE_RENEW_S", min(LEASE_RENEW_S, lease / 20)))
        except ValueError:
            raise ValueError("STUDY_LEASE_S and STUDY_LEASE_RENEW_S must be numbers of seconds, "
                             f"got {env.get('STUDY_LEASE_S')!r}, "
                             f"{env.get('STUDY_LEASE_RENEW_S')!r}") from None
        return cls(lease, renew)


@dataclass(frozen=True)
class Claim:
    run_id: str
    host: str
    pid: int
    time: float                  # when it was claimed (the holder's clock: shown only)
    lease_s: float = LEASE_S     # the holder's lease
    heartbeat: float = 0.0       # the claim file's mtime: the holder's last renewal
    age_s: float = field(default=0.0, compare=False)   # since the heartbeat, filesystem clock

    @property
    def mine(self) -> bool:
        return self.host == HOST and self.pid == os.getpid()

    @property
    def expired(self) -> bool:
        return self.age_s > self.lease_s

    @property
    def stale(self) -> bool:
        """Not renewed within its lease, or held by a process of this host that is gone."""
        return self.expired or (self.host == HOST and not _alive(self.pid))

    def where(self) -> str:
        since = time.strftime("%H:%M:%S", time.localtime(self.time))
        late = f", lease expired {self.age_s - self.lease_s:.0f}s ago" if self.expired else ""
        return (f"{self.host} pid {self.pid} since {since}, "
                f"heartbeat {max(self.age_s, 0.0):.0f}s ago{late}")


def _alive(pid: int) -> bool:
    if pid <= 0:          # no process (kill(0) and kill(-1) would address groups)
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:       # someone else's live process
        return True
    return True


_clock_lock = threading.Lock()
_clocks: dict[Path, tuple[float, float]] = {}    # runs_dir -> (its clock, monotonic) when read


def fs_now(runs_dir: Path) -> float:
    """Now by the clock that stamps the files in ``runs_dir`` (see the module docstring): the
    mtime of a file touched now, read once a minute and advanced by this host's monotonic
    clock in between; this host's time where the folder cannot be written."""
    with _clock_lock:
        seen = _clocks.get(runs_dir)
    if seen is None or time.monotonic() - seen[1] > FS_CLOCK_REFRESH_S:
        probe = runs_dir / CLOCK_FILE
        try:
            probe.touch()                 # utime(NULL): the server's time on NFS
            seen = (probe.stat().st_mtime, time.monotonic())
        except OSError:
            return time.time()
        with _clock_lock:
            _clocks[runs_dir] = seen
    return seen[0] + (time.monotonic() - seen[1])


def claim_path(runs_dir: Path, run_id: str) -> Path:
    return runs_dir / f"{run_id}.claim"


def read_claim(runs_dir: Path, run_id: str) -> Claim | None:
    """The run's claim, or None. A claim being written (empty for an instant) or not a claim
    reads as held by an unknown driver with a lease of TAKEOVER_LOCK_TIMEOUT_S (its driver died
    writing it); a lease over MAX_LEASE_S counts as MAX_LEASE_S; a directory in the claim's
    place is moved aside (None: the run is free)."""
    path = claim_path(runs_dir, run_id)
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime     # after the text: a takeover in between reads as fresh
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        try:
            move_aside(path)
        except FileNotFoundError:        # another driver moved it first
            pass
        return None
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("claim %s is unreadable (%s): treated as abandoned", path, exc)
        text, mtime = "", _mtime(path)
    age = fs_now(runs_dir) - mtime
    try:
        return _parse_claim(run_id, json.loads(text), mtime, age)
    except (ValueError, KeyError, TypeError, AttributeError):
        return Claim(run_id, "?", -1, mtime, TAKEOVER_LOCK_TIMEOUT_S, mtime, age)


def _parse_claim(run_id: str, doc: dict, mtime: float, age: float) -> Claim:
    """A claim's fields, checked (ValueError, TypeError, KeyError: not a claim)."""
    lease = float(doc.get("lease_s", LEASE_S))    # claims of older drivers have none
    if not (math.isfinite(lease) and lease > 0):
        lease = LEASE_S
    if lease > MAX_LEASE_S:
        _warn_once((run_id, lease), "claim of run %s asks a lease of %gs: held at most %gs",
                   run_id, lease, MAX_LEASE_S)
        lease = MAX_LEASE_S
    pid, since = doc["pid"], float(doc["time"])
    if isinstance(pid, bool) or not isinstance(pid, int) or not 0 < pid <= MAX_PID:
        raise ValueError(f"pid {pid!r}")
    if not isinstance(doc["host"], str) or not math.isfinite(since):
        raise ValueError("host or time")
    return Claim(run_id, doc["host"], pid, since, lease, mtime, age)


_warned: set[object] = set()


def _warn_once(key: object, msg: str, *args: object) -> None:
    """A claim is read every second while it lives: say what is wrong with it once."""
    if key not in _warned:
        _warned.add(key)
        log.warning(msg, *args)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def try_claim(runs_dir: Path, run_id: str, lease: Lease | None = None) -> bool:
    """Claim the run for this process; False when another live driver holds it. The caller
    keeps the claim alive with a :class:`Heartbeat` on ``runs_dir`` using the same ``lease``."""
    lease = lease or Lease()
    runs_dir.mkdir(parents=True, exist_ok=True)
    if _create(claim_path(runs_dir, run_id), lease):
        return True
    held = read_claim(runs_dir, run_id)
    if held is None:                       # released in between: try once more
        return _create(claim_path(runs_dir, run_id), lease)
    if held.mine:
        return True
    if not held.stale:
        return False
    log.warning("taking over run %s from %s", run_id, held.where())
    return _take_over(runs_dir, held, lease)


def release(runs_dir: Path, run_id: str) -> None:
    """Drop this process's claim (left alone when another driver holds it)."""
    held = read_claim(runs_dir, run_id)
    if held is not None and held.mine:
        claim_path(runs_dir, run_id).unlink(missing_ok=True)


def claims(runs_dir: Path) -> dict[str, Claim]:
    """Every current claim in the folder (stale ones included), by run id."""
    out: dict[str, Claim] = {}
    for path in runs_dir.glob("*.claim") if runs_dir.is_dir() else []:
        held = read_claim(runs_dir, path.stem)
        if held is not None:
            out[path.stem] = held
    return out


def renew(runs_dir: Path) -> list[str]:
    """Stamp a fresh heartbeat on each of this process's claims; returns their run ids."""
    renewed = []
    for run_id, held in claims(runs_dir).items():
        if not held.mine:
            continue
        if held.expired:      # nobody took it over yet, but a driver may be about to
            log.warning("claim of run %s renewed %.0fs after its lease ran out (the driver was "
                        "stalled); raise the lease if this recurs", run_id,
                        held.age_s - held.lease_s)
        try:
            os.utime(claim_path(runs_dir, run_id))     # utime(NULL): the server's time on NFS
        except FileNotFoundError:                      # released meanwhile
            continue
        renewed.append(run_id)
    return renewed


class Heartbeat:
    """Renews this process's claims in ``runs_dir`` every ``lease.renew_s`` on a daemon thread,
    so that a run blocking the driver's loop (an inline one) keeps its claim; ``with`` it or
    call start() and stop()."""

    def __init__(self, runs_dir: Path, lease: Lease) -> None:
        self.runs_dir, self.lease = runs_dir, lease
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="claims-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.lease.renew_s):
            try:
                renew(self.runs_dir)
            except OSError as exc:     # a filesystem hiccup: the next beat tries again
                log.warning("could not renew the claims in %s: %s", self.runs_dir, exc)


def _create(path: Path, lease: Lease) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump({"host": HOST, "pid": os.getpid(), "time": time.time(),
                   "lease_s": lease.lease_s}, f)
    return True


def _take_over(runs_dir: Path, stale: Claim, lease: Lease) -> bool:
    """Replace a stale claim. Two drivers may find the same stale claim at once: a takeover
    lock (itself O_EXCL) lets one of them in; the other leaves the run to it. A claim renewed
    or replaced since it was read (``!=`` compares the heartbeat) is left alone."""
    lock = runs_dir / f"{stale.run_id}.takeover"
    if not _create(lock, lease):
        try:
            if fs_now(runs_dir) - lock.stat().st_mtime < TAKEOVER_LOCK_TIMEOUT_S:
                return False
            if lock.is_dir():                  # never a lock of ours
                move_aside(lock)
            lock.unlink(missing_ok=True)       # its owner died mid-takeover
        except FileNotFoundError:
            pass
        if not _create(lock, lease):
            return False
    try:
        again = read_claim(runs_dir, stale.run_id)
        if again is not None and again != stale:    # renewed, or someone took it over first
            return again.mine
        claim_path(runs_dir, stale.run_id).unlink(missing_ok=True)
        return _create(claim_path(runs_dir, stale.run_id), lease)
    finally:
        lock.unlink(missing_ok=True)
