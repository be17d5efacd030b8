"""Run a study: ``python -m pipelines.run_study [CONFIG] [--out DIR] [--jobs N]
[--executor local|ray|slurm]`` (docs/reference.md §3, §5).

With no CONFIG it runs the embedded default study (pipelines/configs/default.toml: digits,
offline, CPU), several runs at once (``--jobs``: cores // the study's threads by default).
Finished runs in ``--out`` are skipped, so an interrupted study resumes; several drivers on one
``--out`` share the runs. A run that raises is recorded in ``failures.json`` and the others go
on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from pipelines._cli import FieldOption, add_field_options, apply_given, field_options
from training.study.claims import Lease, claims
from training.study.config import DEFAULT_CONFIG, StudyConfig, load_study
from training.study.executors import ExecutorConfig, list_executors
from training.study.findings import markdown_table
from training.study.results import ResultsCorrupt, ResultsStore
from training.study.runner import StudyCannotRun, run_study


def executor_options() -> tuple[FieldOption, ...]:
    """One flag per ExecutorConfig field (``--executor`` for its kind), given only to override
    the config's ``[executor]`` table: a field added there is a flag here. Built per parser, so
    that an executor registered after import is a choice."""
    return field_options(ExecutorConfig, override=True, flags={"kind": "--executor"},
                         choices={"kind": list_executors()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.run_study", description=__doc__)
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG),
                        help="study config (.toml/.yaml); default: the embedded digits study")
    parser.add_argument("--out", default=None, help="output dir (default runs/<study name>)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every evaluation")
    parser.add_argument("--only", nargs="+", metavar="EXPERIMENT",
                        help="run only these experiments (by name)")
    parser.add_argument("--list", action="store_true",
                        help="list the runs (done, failed, running where, to do), train nothing")
    options = executor_options()
    add_field_options(parser.add_argument_group(
        "executor", "where the runs execute; a flag given overrides the config's [executor] "
        "key of its name (--executor: kind; training.study.executors.ExecutorConfig)"),
        options)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        study = load_study(args.config)
        executor = apply_given(ExecutorConfig.from_table(study.executor), args, options)
        Lease.from_env()            # a bad STUDY_LEASE_S is an error before any run, not in one
    except (OSError, ValueError, KeyError, TypeError) as exc:  # bad path or config: one line
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    if args.only:
        unknown = sorted(set(args.only) - {e.name for e in study.experiments})
        if unknown:
            known = ", ".join(e.name for e in study.experiments)
            print(f"error: no experiment {', '.join(unknown)}; known: {known}", file=sys.stderr)
            return 2
    out = Path(args.out) if args.out else Path("runs") / study.name
    if args.list:
        try:
            print_runs(study, out, only=args.only)
        except ResultsCorrupt as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return 0
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        report = run_study(study, out, progress=not args.no_progress, only=args.only,
                           executor=executor)
    except (StudyCannotRun, ResultsCorrupt, ImportError) as exc:     # raised before any run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:       # Ctrl-C or SIGTERM: workers stopped, claims released
        print(f"stopped: finished runs are kept in {out}; run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    others = f", {report.by_others} by another driver" if report.by_others else ""
    print(f"study {study.name}: {report.ran} runs now, {report.skipped} already done{others} "
          f"-> {out}")
    for name, table in report.tables.items():
        print(f"\n## {name}\n{markdown_table(table)}")
    print("\n## Findings")
    for claim in report.claims:
        print(claim.line())
    print(f"\nsummary: {report.summary_path}; figures: {len(report.figures)} in {out / 'figures'}")
    if report.invalid:
        print(f"\n{len(report.invalid)} result file(s) were not valid rows; their runs were "
              "redone:", file=sys.stderr)
        for path, why in report.invalid.items():
            print(f"  {path}: {why}", file=sys.stderr)
    if report.failures:
        print(f"\n{len(report.failures)} run(s) failed (a re-run retries them; details in "
              f"{out / 'failures.json'}):", file=sys.stderr)
        for f in report.failures:
            print(f"  {f['run_id']} {f.get('model')} {f.get('algorithm')} knob={f.get('knob')} "
                  f"non-IID={f.get('noniid_fraction')} seed={f.get('seed')}: {f['error']}",
                  file=sys.stderr)
        return 1
    return 0


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the study as Ctrl-C does: the driver's ``finally`` blocks release its
    claims and stop its workers (the default action would kill the driver alone)."""
    raise KeyboardInterrupt


def print_runs(study: StudyConfig, out: Path, only: Sequence[str] | None = None) -> None:
    """One line per run (of the experiments named in ``only``, if given): done, failed, running
    (where, from its claim) or to do, and what it is."""
    done = ResultsStore(out)
    held = claims(done.runs_dir)
    runs = study.all_runs(only)
    for spec in runs:
        knob = "SkewScout" if spec.mode == "skewscout" else (spec.knob or "-")
        state, where = "todo", ""
        why = done.invalid.get(done.row_path(spec.run_id))
        if why is not None:
            where = f" (its row is invalid: {why})"
        if spec.run_id in done:
            state = "done"
        elif spec.run_id in held:
            state, where = "running", f" on {held[spec.run_id].where()}"
        elif done.failure(spec.run_id) is not None:
            state = "failed"
        print(f"{state} {spec.run_id} {spec.model} "
              f"{spec.algorithm} knob={knob} non-IID={spec.noniid_fraction:g} "
              f"N={spec.num_partitions} seed={spec.seed}{where}")
    left = sum(spec.run_id not in done for spec in runs)
    print(f"study {study.name}: {len(runs)} runs, {left} to do -> {out}")


if __name__ == "__main__":
    raise SystemExit(main())
