"""The study's results store: one row per run in results.json / .csv / .parquet, resumable.

``results.json`` is the source of truth (a list of rows with nested lists kept as lists); the CSV
and Parquet files are flat views of it (nested values as JSON strings) rewritten after every run,
so an interrupted study leaves consistent files and a re-run skips every run already stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from skewtools._io import atomic_write_text, atomic_write_with

NESTED = ("curve", "bytes_curve", "bytes_sent", "knob_trace", "estimates", "spec")


class ResultsStore:
    """Rows keyed by ``run_id``, persisted under ``out_dir`` (created at the first write, so
    that reading what a folder holds leaves no folder behind)."""

    def __init__(self, out_dir: str | Path) -> None:
        self.out_dir = Path(out_dir)
        self.rows: dict[str, dict[str, Any]] = {}
        path = self.out_dir / "results.json"
        if path.exists():
            for row in json.loads(path.read_text()):
                self.rows[row["run_id"]] = row

    def __contains__(self, run_id: str) -> bool:
        return run_id in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, run_id: str) -> dict[str, Any]:
        return self.rows[run_id]

    def add(self, row: dict[str, Any]) -> None:
        """Store one finished run and rewrite the three files."""
        if "run_id" not in row:
            raise ValueError("a result row needs a 'run_id'")
        self.rows[row["run_id"]] = row
        self.flush()

    def flush(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rows = list(self.rows.values())
        text = json.dumps(rows, indent=1, default=float)
        atomic_write_text(self.out_dir / "results.json", text)
        frame = flat_frame(rows)
        atomic_write_with(self.out_dir / "results.csv", lambda p: frame.to_csv(p, index=False))
        atomic_write_with(self.out_dir / "results.parquet",
                          lambda p: frame.to_parquet(p, index=False))


def flat_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with nested values turned into JSON strings."""
    flat = [{k: (json.dumps(v, default=float) if k in NESTED else v) for k, v in r.items()}
            for r in rows]
    return pd.DataFrame(flat)
