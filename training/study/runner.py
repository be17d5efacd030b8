"""The study runner (docs/reference.md §3, §5): expand a study, run what is missing, report.

:func:`run_study` runs every run of a :class:`~training.study.config.StudyConfig` that the results
store in ``out_dir`` does not hold yet (so an interrupted study resumes), then writes the figures
and ``summary.md`` (tables + a verdict per finding, computed from the numbers). One run =
dataset -> skewtools partitions -> model + algorithm (+ SkewScout) -> Trainer -> one result row.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from skewtools.io import atomic_write_text
from training.study.config import RunSpec, StudyConfig
from training.study.executors import (
    ExecutorConfig,
    InlineBackend,
    SlurmMissing,
    check_slurm,
    make_backend,
)
from training.study.figures import draw_all
from training.study.findings import Claim, all_claims, experiment_frames, summary_markdown
from training.study.results import ResultsStore
from training.study.schedule import execute_all

log = logging.getLogger(__name__)


class StudyCannotRun(RuntimeError):
    """This machine cannot run the study at all (raised before any run)."""


@dataclass
class StudyReport:
    out_dir: Path
    rows: dict[str, dict]
    claims: list[Claim]
    tables: dict
    figures: list[Path]
    ran: int            # runs executed now (failed ones included)
    skipped: int        # runs found finished in the store
    failures: list[dict[str, Any]] = field(default_factory=list)   # see failures.json
    by_others: int = 0  # runs other drivers on the same folder finished meanwhile
    invalid: dict[Path, str] = field(default_factory=dict)   # files found invalid -> why

    @property
    def summary_path(self) -> Path:
        return self.out_dir / "summary.md"


def run_study(study: StudyConfig, out_dir: str | Path, *, progress: bool = True,
              only: Sequence[str] | None = None,
              executor: ExecutorConfig | None = None) -> StudyReport:
    """Run the missing runs of ``study`` (of its experiments named in ``only``, if given) into
    ``out_dir`` on ``executor`` (default: this machine, :func:`default_jobs` at once), then
    write the merged results, figures and summary.md for the whole study from all finished runs.
    The report's claims and tables are those of the experiments named in ``only`` (all without).

    Other drivers may work on the same ``out_dir`` at once: they share the runs (claims.py).
    """
    out = Path(out_dir)
    executor = executor or ExecutorConfig.from_table(study.executor)
    specs = study.all_runs(only)
    store = ResultsStore(out)           # ResultsCorrupt: a folder it cannot read
    invalid = dict(store.invalid)       # found before the runs (redone now)
    todo = [s for s in specs if s.run_id not in store]
    missing = missing_device(todo) if executor.kind == "local" else None
    if missing:     # every run would fail the same way: say it once, before any (and no folder)
        raise StudyCannotRun(missing)
    if todo and executor.kind == "slurm":
        try:
            check_slurm(executor)
        except SlurmMissing as exc:
            raise StudyCannotRun(str(exc)) from None
    check_writable(out)
    log.info("study %s: %d runs, %d already finished", study.name, len(specs),
             len(specs) - len(todo))
    backend = make_backend(executor, study, todo, out) if todo else InlineBackend(study.threads)
    outcome = execute_all(todo, store, backend, desc=f"study {study.name}", progress=progress)
    store.flush()
    failures = study_failures(store, specs)
    write_failures(out, failures)
    frames = experiment_frames(study, store.rows)      # once, for the claims and the figures
    claims, tables = all_claims(study, store.rows, frames)
    figures = draw_all(study, store.rows, out / "figures", frames)
    summary = summary_markdown(study, claims, tables,
                               [str(p.relative_to(out)) for p in figures])
    if only is not None:     # the report shows what ran: the claims of those experiments only
        claims, tables = all_claims(study, store.rows,
                                    {k: v for k, v in frames.items() if k in only})
    if failures:
        summary += (f"\n{len(failures)} run(s) failed and are left out above; see "
                    "failures.json (a re-run retries them).\n")
    atomic_write_text(out / "summary.md", summary)
    return StudyReport(out, store.rows, claims, tables, figures, outcome.ran,
                       len(specs) - len(todo), failures, outcome.by_others,
                       {**invalid, **store.invalid})


VIEWS = ("results.json", "results.csv", "results.parquet", "summary.md", "failures.json",
         "figures")


def check_writable(out: Path) -> None:
    """Stop before any run when the results could not be written (a file, no permission)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "runs").mkdir(exist_ok=True)
        with tempfile.TemporaryFile(dir=out / "runs"):
            pass
    except OSError as exc:
        raise StudyCannotRun(f"cannot write results to {out}: {exc.strerror or exc}; pass "
                             "--out a folder you can write") from None
    for name in VIEWS:
        path, folder = out / name, name == "figures"
        if path.exists() and path.is_dir() != folder:
            raise StudyCannotRun(f"{path} is a {'file' if folder else 'directory'} where the "
                                 f"study writes its {'figures' if folder else 'merged results'}"
                                 "; move it away")


def study_failures(store: ResultsStore, specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    """The study's runs whose last attempt failed and that have no row."""
    out = []
    for spec in specs:
        failed = None if spec.run_id in store else store.failure(spec.run_id)
        if failed is not None:
            out.append(failed[0])
    return out


def missing_device(specs: list[RunSpec]) -> str | None:
    """Why these runs cannot start here (a CUDA device asked for, none or not that one
    visible), or None."""
    wanted = {str(s.train.get("device", "cpu")) for s in specs}
    cuda = sorted(d for d in wanted if d.startswith("cuda"))
    if cuda and not torch.cuda.is_available():
        return ("the study trains on a CUDA device ([train] device) but this machine has none; "
                "set device = \"cpu\" in the config to run it here (slowly)")
    count = torch.cuda.device_count() if cuda else 0
    beyond = [d for d in cuda if d[5:].isdigit() and int(d[5:]) >= count]   # "cuda:N"
    if beyond:
        return (f"the study trains on {', '.join(beyond)} ([train] device) but this machine has "
                f"{count} CUDA device(s), cuda:0..cuda:{count - 1}; pick one of them")
    return None


def write_failures(out: Path, failures: list[dict[str, Any]]) -> None:
    """``failures.json`` lists the study's failed runs (merged from runs/ID.error.json, whoever
    ran them); no failures, no file."""
    path = out / "failures.json"
    if failures:
        atomic_write_text(path, json.dumps(failures, indent=1, default=str))
    else:
        path.unlink(missing_ok=True)
