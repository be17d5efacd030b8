"""The study's results store: one file per run, safe for concurrent drivers (docs/reference.md §5).

Layout under ``out_dir``::

    runs/ID.json        one finished run's row (the source of truth), written via a temp file
                        and os.replace, so a reader never sees half a row
    runs/ID.error.json  the run's last failure (error + traceback tail); removed once it succeeds
    runs/ID.claim       a driver is running it now: {"host", "pid", "time", "lease_s"}; its mtime is
                        the last heartbeat (see claims.py)
    results.json/.csv/.parquet   every row merged by the report (views; rewritten, never read
                        back, except in a folder of the older layout, which is migrated)

A finished run is never redone; a killed driver loses no finished run (each row is on disk the
moment it is written) and duplicates none (rows are keyed by run id).

Every row is checked when read (:func:`check_row`: the fields the report reads, with their types;
accuracies finite). A row that fails (truncated, wrong types, ``NaN``, another run's row, a
directory in its place) is reported with its file and reason (logged, and listed in
:attr:`ResultsStore.invalid`) and its run is redone; a directory in a row's place is moved aside
to ``ID.json.invalid-N`` when the redone row is written.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from skewtools.io import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

NESTED = ("curve", "bytes_curve", "bytes_sent", "knob_trace", "estimates", "spec")


class ResultsCorrupt(ValueError):
    """A results file cannot be read; the message names it and how to recover."""


class InvalidRow(ValueError):
    """A result row (or its file) is not a valid row; the message says why."""


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _pairs(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(p, list) and len(p) == 2 and _number(p[0])
                                       and _number(p[1]) for p in v)


# what the report reads from a row: (field, check, what it must be)
_Check = tuple[str, Callable[[Any], bool], str]
REQUIRED: tuple[_Check, ...] = (
    ("run_id", lambda v: isinstance(v, str) and bool(v), "a run id"),
    ("mode", lambda v: v in ("fixed", "skewscout"), '"fixed" or "skewscout"'),
    ("model", lambda v: isinstance(v, str), "a model name"),
    ("algorithm", lambda v: isinstance(v, str), "an algorithm name"),
    ("knob", lambda v: v is None or _number(v), "a finite number or null"),
    ("noniid_fraction", lambda v: _number(v) and 0 <= v <= 1, "a fraction in [0, 1]"),
    ("seed", _whole, "a whole number"),
    ("final_acc", lambda v: _number(v) and 0 <= v <= 1, "an accuracy in [0, 1]"),
    ("acc_at_half", lambda v: _number(v) and 0 <= v <= 1, "an accuracy in [0, 1]"),
    ("bytes_per_iteration", lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    ("bsp_bytes_per_iteration", lambda v: _number(v) and v >= 0, "a finite number >= 0"),
    ("curve", _pairs, "a list of [iteration, accuracy] pairs"),
)
# rows of older layouts may lack these; present, they must hold
OPTIONAL: tuple[_Check, ...] = (
    ("num_partitions", lambda v: _whole(v) and v >= 1, "a whole number >= 1"),
    ("iterations", lambda v: _whole(v) and v >= 0, "a whole number"),
    ("best_acc", lambda v: _number(v) and 0 <= v <= 1, "an accuracy in [0, 1]"),
    ("final_global_acc", lambda v: v is None or (_number(v) and 0 <= v <= 1),
     "an accuracy in [0, 1] or null"),
    ("bytes_curve", _pairs, "a list of [iteration, bytes] pairs"),
    ("bytes_sent", lambda v: isinstance(v, list) and all(_number(b) for b in v),
     "a list of finite numbers"),
    ("travel_bytes", _number, "a finite number"),
    ("comm_vs_bsp", _number, "a finite number"),
    ("wall_time_s", _number, "a finite number"),
    ("knob_trace", lambda v: isinstance(v, list), "a list"),
    ("estimates", lambda v: isinstance(v, list), "a list"),
    ("spec", lambda v: isinstance(v, dict), "a table"),
)


def check_row(row: Any, run_id: str | None = None) -> str | None:
    """Why ``row`` is not a valid result row (of run ``run_id``, if given), or None."""
    if not isinstance(row, dict):
        return f"a row is a JSON object, got {type(row).__name__}"
    for key, ok, what in REQUIRED:
        if key not in row:
            return f"no {key!r}"
        if not ok(row[key]):
            return f"{key} is {row[key]!r}, expected {what}"
    for key, ok, what in OPTIONAL:
        if key in row and not ok(row[key]):
            return f"{key} is {row[key]!r}, expected {what}"
    if run_id is not None and row["run_id"] != run_id:
        return f"it holds run {row['run_id']!r}, not {run_id!r}"
    return None


def read_row(path: Path) -> dict[str, Any]:
    """The row in ``runs/ID.json``; :class:`InvalidRow` saying why it is not one."""
    try:
        text = path.read_text()
    except IsADirectoryError:
        raise InvalidRow("a directory, not a row file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRow(f"unreadable ({exc})") from None
    try:
        row = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidRow(f"not JSON ({exc}): truncated or overwritten?") from None
    why = check_row(row, path.name[:-len(".json")])
    if why is not None:
        raise InvalidRow(why)
    return row


class ResultsStore:
    """Rows keyed by ``run_id``, persisted under ``out_dir`` (created at the first write, so
    that reading what a folder holds leaves no folder behind)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.rows: dict[str, dict[str, Any]] = {}
        self.invalid: dict[Path, str] = {}     # files that are not valid rows -> why (redone)
        self._legacy = self._read_legacy()
        self.refresh()

    def row_path(self, run_id: str) -> Path:
        """Where run ``run_id``'s row lives (its own file: the source of truth)."""
        return self.runs_dir / f"{run_id}.json"

    def _read_legacy(self) -> dict[str, dict[str, Any]]:
        """Rows of a folder written before runs/ existed (results.json only): migrated at the
        first write. A folder with runs/ holds its truth there and results.json is a view."""
        path = self.out_dir / "results.json"
        if self.runs_dir.is_dir() or not path.exists():
            return {}
        how = (f"restore {path} from a backup, or move it away to redo its runs "
               f"(rows already in {self.runs_dir} are kept)")
        try:
            rows = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsCorrupt(f"{path} is unreadable ({exc}); {how}") from None
        if not isinstance(rows, list) or not all(_is_row(r) for r in rows):
            raise ResultsCorrupt(f"{path} is not a list of result rows each with a 'run_id'; "
                                 f"{how}")
        valid = {}
        for i, row in enumerate(rows):
            why = check_row(row)
            if why is None:
                valid[row["run_id"]] = row
            else:
                self._report(path, f"row {i} (run {row['run_id']}): {why}")
        return valid

    def _report(self, path: Path, why: str) -> None:
        if self.invalid.get(path) != why:
            log.warning("%s is not a valid result row (%s): its run is redone", path, why)
        self.invalid[path] = why

    def refresh(self) -> None:
        """Re-read runs/ (rows other drivers finished since); invalid files are reported in
        :attr:`invalid` (and logged once) and their runs count as not finished."""
        rows = dict(self._legacy)
        seen = {p: w for p, w in self.invalid.items() if p.parent != self.runs_dir}
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else []:
            if path.name.endswith(".error.json"):
                continue
            try:
                row = read_row(path)
            except InvalidRow as exc:
                self._report(path, str(exc))
                seen[path] = str(exc)
                continue
            rows[row["run_id"]] = row
        self.invalid = seen
        self.rows = rows

    def finished(self, run_id: str) -> bool:
        """Whether run ``run_id`` has a valid row on disk now (whoever wrote it)."""
        try:
            read_row(self.row_path(run_id))
        except InvalidRow:
            return False
        return True

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, run_id: str) -> dict[str, Any]:
        return self.rows[run_id]

    def add(self, row: dict[str, Any]) -> None:
        """Commit one finished run (its own file, atomically) and forget its last failure."""
        why = check_row(row)
        if why is not None:
            raise InvalidRow(f"the run's result row is invalid: {why}")
        self._migrate()
        run_id = row["run_id"]
        path = self.row_path(run_id)
        if path.is_dir():
            move_aside(path)
        text = json.dumps(row, indent=1, default=float)
        atomic_write_with(path, lambda p: p.write_text(text))
        self.rows[run_id] = row
        self.invalid.pop(path, None)
        failed = self.runs_dir / f"{run_id}.error.json"
        if failed.is_dir():
            move_aside(failed)
        failed.unlink(missing_ok=True)

    def add_failure(self, record: dict[str, Any]) -> None:
        """Record a failed run (retried by the next invocation)."""
        self._migrate()
        text = json.dumps(record, indent=1, default=str)
        path = self.runs_dir / f"{record['run_id']}.error.json"
        if path.is_dir():
            move_aside(path)
        atomic_write_with(path, lambda p: p.write_text(text))

    def failure(self, run_id: str) -> tuple[dict[str, Any], float] | None:
        """The run's last failure record and when it was written (None: no failure, or a
        record that is not one: logged, and the run is simply tried again)."""
        path = self.runs_dir / f"{run_id}.error.json"
        try:
            record, mtime = json.loads(path.read_text()), path.stat().st_mtime
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("%s is not a readable failure record (%s): ignored", path, exc)
            return None
        why = check_failure(record, run_id)
        if why is not None:
            log.warning("%s is not a failure record (%s): ignored", path, why)
            return None
        return record, mtime

    def _migrate(self) -> None:
        """Turn an older folder's results.json rows into runs/ files (before the first write,
        so that the folder never holds rows only results.json knows of)."""
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for run_id, row in self._legacy.items():
            path = self.runs_dir / f"{run_id}.json"
            if not path.exists():
                text = json.dumps(row, indent=1, default=float)
                atomic_write_with(path, lambda p, t=text: p.write_text(t))
        self._legacy = {}

    def flush(self) -> None:
        """Merge every row into results.json / .csv / .parquet."""
        self._migrate()
        self.refresh()
        rows = list(self.rows.values())
        text = json.dumps(rows, indent=1, default=float)
        atomic_write_text(self.out_dir / "results.json", text)
        frame = flat_frame(rows)
        atomic_write_with(self.out_dir / "results.csv", lambda p: frame.to_csv(p, index=False))
        atomic_write_with(self.out_dir / "results.parquet",
                          lambda p: frame.to_parquet(p, index=False))


def _is_row(row: Any) -> bool:
    return isinstance(row, dict) and isinstance(row.get("run_id"), str)


def check_failure(record: Any, run_id: str) -> str | None:
    """Why ``record`` is not run ``run_id``'s failure record (schedule.spec_failure), or None."""
    if not isinstance(record, dict):
        return f"a JSON object, got {type(record).__name__}"
    if record.get("run_id") != run_id:
        return f"run_id is {record.get('run_id')!r}, not {run_id!r}"
    if not isinstance(record.get("error"), str):
        return f"error is {record.get('error')!r}, expected a message"
    if not _number(record.get("time")):
        return f"time is {record.get('time')!r}, expected a finite number"
    return None


def move_aside(path: Path) -> Path:
    """Rename ``path`` (a directory where a row or claim file belongs) to ``NAME.invalid-N``:
    kept for its owner to look at, out of the study's way."""
    n = 0
    while (aside := path.with_name(f"{path.name}.invalid-{n}")).exists():
        n += 1
    path.rename(aside)
    log.warning("%s is a directory where a file belongs: moved to %s", path, aside)
    return aside


def flat_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with nested values turned into JSON strings."""
    flat = [{k: (json.dumps(v, default=float) if k in NESTED else v) for k, v in r.items()}
            for r in rows]
    return pd.DataFrame(flat)
