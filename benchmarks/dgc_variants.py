"""DGC's two open choices, measured on the default study's digits runs: the residual's scaling
(``lr_scaled``, the authors', vs ``raw``) and where top-k is taken (``per_layer`` vs the whole
model). Each variant runs GN-LeNet at the given non-IID fractions and seeds with the default
study's settings; a third schedule without LR decay shows how much of the difference the decay
makes (with a constant LR the two residuals are the same algorithm).

    python benchmarks/dgc_variants.py [--seeds 0 1 2] [--fractions 0.0 1.0] [--jobs 2]

Prints one row per variant: mean final accuracy at each fraction, the loss vs IID, and bytes per
iteration relative to BSP. Accuracies depend slightly on the CPU (summation order).
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from training.study.config import load_study
from training.study.executors import run_one

VARIANTS = {
    "whole, lr_scaled (default)": {},
    "whole, raw": {"residual": "raw"},
    "per_layer, lr_scaled": {"per_layer": True},
    "per_layer, raw": {"per_layer": True, "residual": "raw"},
}


def specs(seeds, fractions, decay: bool):
    study = load_study()
    out = []
    for name, extra in VARIANTS.items():
        for frac in fractions:
            for seed in seeds:
                spec = study.spec("gn-lenet", "dgc", frac, seed)
                params = {**spec.algorithm_params, **extra}
                train = dict(spec.train) if decay else {**spec.train, "lr_milestones": []}
                out.append((name, frac, seed, replace(spec, algorithm_params=params,
                                                      train=train)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-decay", action="store_true", help="also run without LR decay")
    args = parser.parse_args()
    schedules = [True, False] if args.no_decay else [True]
    for decay in schedules:
        runs = specs(args.seeds, args.fractions, decay)
        with ProcessPoolExecutor(args.jobs) as pool:
            results = list(pool.map(run_one, [s for *_, s in runs], [1] * len(runs)))
        table: dict[tuple[str, float], list[float]] = {}
        comm: dict[str, list[float]] = {}
        for (name, frac, _, _), res in zip(runs, results, strict=True):
            if "row" not in res:
                raise SystemExit(f"{name} {frac}: {res['error']}")
            table.setdefault((name, frac), []).append(100 * res["row"]["final_acc"])
            comm.setdefault(name, []).append(res["row"]["comm_vs_bsp"])
        print(f"\nLR decay {'on (x0.1 at 50% and 75%)' if decay else 'off'}; "
              f"seeds {args.seeds}; GN-LeNet, digits, 5 partitions, 300 iterations")
        head = " | ".join(f"acc@{f:.0%}" for f in args.fractions)
        print(f"| variant | {head} | loss@{args.fractions[-1]:.0%} | bytes vs BSP |")
        print("|---|" + "---|" * (len(args.fractions) + 2))
        for name in VARIANTS:
            accs = [statistics.mean(table[(name, f)]) for f in args.fractions]
            cells = " | ".join(f"{a:.1f}" for a in accs)
            print(f"| {name} | {cells} | {accs[0] - accs[-1]:.1f} | "
                  f"{statistics.mean(comm[name]):.4f} |")


if __name__ == "__main__":
    main()
