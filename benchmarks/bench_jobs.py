"""``run_study --jobs N`` against the serial study and against what the machine allows.

    python benchmarks/bench_jobs.py [CONFIG] [--only EXPERIMENT ...] [--jobs 2]

1. The study end to end (a fresh ``python -m pipelines.run_study`` into an empty folder, start-up,
   figures and summary included), serially and with ``--jobs N``; the two sets of rows must be
   identical apart from ``wall_time_s``.
2. The machine's limit for N runs at once: one run alone in a warmed-up worker, then the same run
   in N warmed-up workers at once (no start-up, no driver), best of 3 each:
   ``N * alone / together``. On a machine whose cores share memory bandwidth or a hypervisor's
   time this is below N, and no scheduler can beat it.

Prints both wall times, the speed-up, the limit and the speed-up as a share of the limit. Run it on
a quiet machine: anything else running takes cores from the parallel study first.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from training.study.config import DEFAULT_CONFIG, RunSpec, load_study
from training.study.executors import run_one


def study_wall(config: str, only: list[str] | None, jobs: int, out: Path) -> float:
    cmd = [sys.executable, "-m", "pipelines.run_study", config, "--out", str(out),
           "--no-progress", "--jobs", str(jobs)]
    if only:
        cmd += ["--only", *only]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run_study --jobs {jobs} failed:\n{done.stderr[-2000:]}")
    return wall


def rows(out: Path) -> dict[str, dict]:
    found = {}
    for path in sorted((out / "runs").glob("*.json")):
        row = json.loads(path.read_text())
        row.pop("wall_time_s", None)
        found[row["run_id"]] = row
    return found


def _warm() -> int:
    return os.getpid()


def _timed_runs(pool: ProcessPoolExecutor, spec: RunSpec, threads: int, n: int) -> float:
    """Seconds for ``n`` runs of ``spec`` submitted at once; a failed run stops the benchmark."""
    start = time.perf_counter()
    done = [f.result() for f in [pool.submit(run_one, spec, threads) for _ in range(n)]]
    failed = [d["error"] for d in done if "row" not in d]
    if failed:
        raise SystemExit(failed[0])
    return time.perf_counter() - start


def parallel_limit(config: str, only: list[str] | None, jobs: int,
                   repeat: int = 3) -> tuple[float, float]:
    """(one run alone, the same run in ``jobs`` workers at once), seconds, warmed-up workers:
    the best of ``repeat`` timings each (a worker's first run pays for loading the data and
    the model; the best timing leaves out that and passing noise)."""
    study = load_study(config)
    spec, threads = study.all_runs(only)[0], study.threads
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
        wait([pool.submit(_warm) for _ in range(4 * jobs)])
        _timed_runs(pool, spec, threads, jobs)  # one run in each worker (seconds each): all warm
        alone = min(_timed_runs(pool, spec, threads, 1) for _ in range(repeat))
        together = min(_timed_runs(pool, spec, threads, jobs) for _ in range(repeat))
    return alone, together


def limit_line(alone: float, together: float, jobs: int) -> str:
    return (f"machine limit   one run {alone:.2f} s alone, {jobs} at once {together:.2f} s "
            f"-> {jobs * alone / together:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default=str(DEFAULT_CONFIG))
    parser.add_argument("--only", nargs="+")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="keep the parallel study's folder here "
                        "(e.g. runs/default, for pipelines.results_doc)")
    parser.add_argument("--limit-only", action="store_true",
                        help="measure only the machine's limit (step 2)")
    args = parser.parse_args()
    if args.limit_only:
        print(limit_line(*parallel_limit(args.config, args.only, args.jobs), args.jobs))
        return
    with tempfile.TemporaryDirectory() as tmp:
        serial = study_wall(args.config, args.only, 1, Path(tmp) / "serial")
        parallel = study_wall(args.config, args.only, args.jobs, Path(tmp) / "parallel")
        a, b = rows(Path(tmp) / "serial"), rows(Path(tmp) / "parallel")
        same = a == b
        if args.keep:
            shutil.rmtree(args.keep, ignore_errors=True)
            shutil.copytree(Path(tmp) / "parallel", args.keep)
    alone, together = parallel_limit(args.config, args.only, args.jobs)
    limit = args.jobs * alone / together
    speedup = serial / parallel
    scope = f", only {' '.join(args.only)}" if args.only else ""
    print(f"study {Path(args.config).stem} ({len(a)} runs{scope}), {os.cpu_count()} cores")
    print(f"serial          {serial:8.1f} s")
    print(f"--jobs {args.jobs:<8} {parallel:8.1f} s   speed-up {speedup:.2f}x   "
          f"rows identical: {same}")
    print(limit_line(alone, together, args.jobs))
    print(f"speed-up / limit {speedup / limit:.2f}")
    if not same:
        raise SystemExit("rows differ between the serial and the parallel study")


if __name__ == "__main__":
    main()
