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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from skewtools.io import atomic_write_text, atomic_write_with

log = logging.getLogger(__name__)

NESTED = ("curve", "bytes_curve", "bytes_sent", "knob_trace", "estimates", "spec")


class ResultsCorrupt(ValueError):
    """A results file cannot be read; the message names it and how to recover."""


class ResultsStore:
    """Rows keyed by ``run_id``, persisted under ``out_dir`` (created at the first write, so
    that reading what a folder holds leaves no folder behind)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.runs_dir = self.out_dir / "runs"
        self.rows: dict[str, dict[str, Any]] = {}
        self.corrupt: list[Path] = []      # per-run files that could not be read (redone)
        self._legacy = self._read_legacy()
        self.refresh()

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
        return {r["run_id"]: r for r in rows}

    def refresh(self) -> None:
        """Re-read runs/ (rows other drivers finished since)."""
        rows = dict(self._legacy)
        corrupt = []
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.is_dir() else []:
            if path.name.endswith(".error.json"):
                continue
            row = _read_row(path)
            if row is None:
                corrupt.append(path)
                continue
            rows[row["run_id"]] = row
        for path in corrupt:
            if path not in self.corrupt:
                log.warning("%s is not a readable result row: its run is redone", path)
        self.corrupt = corrupt
        self.rows = rows

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, run_id: str) -> dict[str, Any]:
        return self.rows[run_id]

    def add(self, row: dict[str, Any]) -> None:
        """Commit one finished run (its own file, atomically) and forget its last failure."""
        if "run_id" not in row:
            raise ValueError("a result row needs a 'run_id'")
        self._migrate()
        run_id = row["run_id"]
        text = json.dumps(row, indent=1, default=float)
        atomic_write_with(self.runs_dir / f"{run_id}.json", lambda p: p.write_text(text))
        self.rows[run_id] = row
        (self.runs_dir / f"{run_id}.error.json").unlink(missing_ok=True)

    def add_failure(self, record: dict[str, Any]) -> None:
        """Record a failed run (retried by the next invocation)."""
        self._migrate()
        text = json.dumps(record, indent=1, default=str)
        atomic_write_with(self.runs_dir / f"{record['run_id']}.error.json",
                      lambda p: p.write_text(text))

    def failure(self, run_id: str) -> tuple[dict[str, Any], float] | None:
        """The run's last failure record and when it was written (None: no failure)."""
        path = self.runs_dir / f"{run_id}.error.json"
        try:
            return json.loads(path.read_text()), path.stat().st_mtime
        except (OSError, ValueError):
            return None

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


def _read_row(path: Path) -> dict[str, Any] | None:
    """A per-run row file, or None when it is truncated, empty or not this run's row."""
    try:
        row = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if _is_row(row) and row["run_id"] == path.stem else None


def flat_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with nested values turned into JSON strings."""
    flat = [{k: (json.dumps(v, default=float) if k in NESTED else v) for k, v in r.items()}
            for r in rows]
    return pd.DataFrame(flat)
