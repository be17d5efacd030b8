"""Run a study: ``python -m pipelines.run_study [CONFIG] [--out DIR]`` (docs/reference.md §3, §5).

With no CONFIG it runs the embedded default study (pipelines/configs/default.toml: digits,
offline, CPU). Finished runs in ``--out`` are skipped, so an interrupted study resumes. A run that
raises is recorded in ``failures.json`` and the others go on; the exit status is then 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from training.study.config import DEFAULT_CONFIG, StudyConfig, load_study
from training.study.findings import markdown_table
from training.study.results import ResultsStore
from training.study.runner import StudyCannotRun, run_study


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
                        help="list the runs (and which are done in --out), train nothing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        study = load_study(args.config)
    except (OSError, ValueError, KeyError) as exc:  # bad path or config: one line, exit 2
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
        print_runs(study, out, only=args.only)
        return 0
    try:
        report = run_study(study, out, progress=not args.no_progress, only=args.only)
    except StudyCannotRun as exc:     # raised before any run
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"study {study.name}: {report.ran} runs now, {report.skipped} already done -> {out}")
    for name, table in report.tables.items():
        print(f"\n## {name}\n{markdown_table(table)}")
    print("\n## Findings")
    for claim in report.claims:
        print(claim.line())
    print(f"\nsummary: {report.summary_path}; figures: {len(report.figures)} in {out / 'figures'}")
    if report.failures:
        print(f"\n{len(report.failures)} run(s) failed (a re-run retries them; details in "
              f"{out / 'failures.json'}):", file=sys.stderr)
        for f in report.failures:
            print(f"  {f['run_id']} {f['model']} {f['algorithm']} knob={f['knob']} "
                  f"non-IID={f['noniid_fraction']} seed={f['seed']}: {f['error']}",
                  file=sys.stderr)
        return 1
    return 0


def print_runs(study: StudyConfig, out: Path, only: Sequence[str] | None = None) -> None:
    """One line per run (of the experiments named in ``only``, if given): done or to do, and
    what it is."""
    done = ResultsStore(out)
    runs = study.all_runs(only)
    for spec in runs:
        knob = "SkewScout" if spec.mode == "skewscout" else (spec.knob or "-")
        print(f"{'done' if spec.run_id in done else 'todo'} {spec.run_id} {spec.model} "
              f"{spec.algorithm} knob={knob} non-IID={spec.noniid_fraction:g} "
              f"N={spec.num_partitions} seed={spec.seed}")
    left = sum(spec.run_id not in done for spec in runs)
    print(f"study {study.name}: {len(runs)} runs, {left} to do -> {out}")


if __name__ == "__main__":
    raise SystemExit(main())
