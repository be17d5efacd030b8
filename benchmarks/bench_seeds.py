"""What seeds cost: one run vs the same run with S seeds as one seed group (docs/engine.md), for one
run and for a mix of the default study's runs, with the per-partition loop and the vmap pass.

Each case trains the study's own runs (digits, 5 partitions, GN-/BN-LeNet) for ``--iterations``
iterations with the study's thread count and reports CPU seconds (this process; a shared
machine's load inflates wall time, not CPU time) and the ratio S seeds / 1 seed. Goal: 3 seeds
<= 1.5x one seed.

    python benchmarks/bench_seeds.py [--iterations 200] [--seeds 3] [--mix]
    python benchmarks/bench_seeds.py --threads 1 2      # the spread between thread counts
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch

from training.study import run
from training.study.config import RunSpec, load_study
from training.study.groups import SeedGroup, execute_group

GOAL = 1.5


def _specs(iterations: int, seeds: int, vectorize: bool, mix: bool) -> list[list[RunSpec]]:
    """Groups of ``seeds`` runs: the default study's GN-LeNet BSP run at 100% non-IID, or (mix)
    every model x algorithm of its noniid/bn_vs_gn experiments at 0% and 100% non-IID."""
    study = load_study()
    wanted = [s for s in study.all_runs(["noniid", "bn_vs_gn"])
              if mix or (s.model == "gn-lenet" and s.algorithm == "bsp"
                         and s.noniid_fraction == 1.0)]
    groups = []
    for spec in wanted:
        train = {**spec.train, "iterations": iterations, "vectorize": vectorize,
                 "eval_every": max(1, iterations // 6)}
        groups.append([replace(spec, train=train, seed=seed) for seed in range(seeds)])
    return groups


def _cost(groups: list[list[RunSpec]]) -> tuple[float, float, list[dict]]:
    """CPU and wall seconds to train ``groups`` (each as one unit), and their rows."""
    cpu, wall, rows = time.process_time(), time.perf_counter(), []
    for group in groups:
        if len(group) == 1:
            rows.append(run.execute_run(group[0]))
        else:
            rows += [o["row"] for o in execute_group(SeedGroup(tuple(group)))]
    return time.process_time() - cpu, time.perf_counter() - wall, rows


def seeds_cost(iterations: int, seeds: int, mix: bool) -> None:
    for vectorize in (False, True):
        one = _cost([g[:1] for g in _specs(iterations, seeds, vectorize, mix)])
        many = _cost(_specs(iterations, seeds, vectorize, mix))
        path = "vmap" if vectorize else "loop"
        ratio = many[0] / one[0]
        print(f"{path}: 1 seed {one[0]:6.1f} s CPU ({one[1]:6.1f} s wall), {seeds} seeds "
              f"{many[0]:6.1f} s CPU ({many[1]:6.1f} s wall): {ratio:.2f}x "
              f"({'meets' if ratio <= GOAL else 'misses'} the {GOAL}x goal)")


def thread_spread(iterations: int, seeds: int, threads: list[int]) -> None:
    """Final accuracy of the same runs at each thread count: the spread a user sees."""
    finals = {}
    for count in threads:
        torch.set_num_threads(count)
        _, _, rows = _cost(_specs(iterations, seeds, True, True))
        finals[count] = {r["run_id"]: r["final_acc"] for r in rows}
    base, other = finals[threads[0]], finals[threads[-1]]
    diffs = sorted(abs(base[k] - other[k]) for k in base)
    print(f"threads {threads[0]} vs {threads[-1]} on {len(diffs)} runs: |d final_acc| mean "
          f"{sum(diffs) / len(diffs) * 100:.2f} points, median {diffs[len(diffs) // 2] * 100:.2f},"
          f" max {diffs[-1] * 100:.2f}; {sum(d == 0 for d in diffs)} identical")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mix", action="store_true", help="the noniid + bn_vs_gn run mix")
    parser.add_argument("--threads", type=int, nargs=2, help="measure the spread instead")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        print(f"load average: {f.read().strip() or 'n/a'}")
    if args.threads:
        thread_spread(args.iterations, args.seeds, args.threads)
        return 0
    torch.set_num_threads(load_study().threads or torch.get_num_threads())
    seeds_cost(args.iterations, args.seeds, args.mix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
