"""How far each run of a SkewScout study lands from its accuracy target, in validation images.

A run meets the target when its final accuracy is at least its seed's BSP accuracy minus
``target``; the Oracle is the cheapest fixed knob that does. Both sides of that comparison are
one seed's run on a few hundred validation images, so this script prints, per model, algorithm
and skew, over the seeds found in the given study folders:

- BSP's accuracy across seeds (mean and sd, in images): how much the threshold itself moves
  from seed to seed;
- each fixed knob's margin (final images minus the seed's threshold) per seed, and how many
  seeds it meets the target on;
- the seeds whose Oracle would be another knob if their threshold moved by one sd of BSP (the
  Oracle's choice there is inside the seed-to-seed noise);
- each SkewScout run's margin, and for a miss whether it is within that sd.

    python benchmarks/skewscout_margins.py OUT [OUT ...] [--target 0.03] [--algorithm fedavg]

docs/skewscout.md quotes it on seeds 0-27. It reads the folders' ``runs/`` rows and trains
nothing.
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from training.study.oracle import KnobOutcome, meets_target, select_oracle
from training.study.results import ResultsStore


def validation_images(rows: Iterable[dict[str, Any]], most: int = 100_000) -> int:
    """The smallest validation size that makes every final accuracy a whole number of images
    (accuracies are float32 fractions k / n)."""
    accs = [r["final_acc"] for r in rows]
    for n in range(1, most + 1):
        if all(abs(a * n - round(a * n)) < 1e-3 for a in accs):
            return n
    raise ValueError(f"no validation size up to {most} fits these accuracies")


def oracle_knob(fixed: dict[float, dict[str, Any]], threshold_acc: float) -> float | None:
    """The cheapest fixed knob at or above ``threshold_acc`` (None: none is)."""
    outcomes = [KnobOutcome(k, r["final_acc"], r["bytes_per_iteration"])
                for k, r in fixed.items()]
    choice = select_oracle(outcomes, threshold_acc, 0.0)
    return choice.knob if choice.feasible else None


def _knob(knob: float | None) -> str:
    return "none" if knob is None else f"{knob:g}"


def _order(knob: float | None) -> tuple[bool, float]:
    return knob is None, knob or 0.0


def cell_report(bsp: dict[int, float], fixed: dict[int, dict[float, dict[str, Any]]],
                scout: dict[int, dict[str, Any]], target: float, n: int) -> list[str]:
    """The lines for one (model, algorithm, skew): see the module docstring."""
    seeds = sorted(s for s in bsp if s in fixed)
    if len(seeds) < 2:
        return ["  fewer than two seeds with BSP and fixed runs: nothing to compare"]
    threshold = {s: bsp[s] - target for s in seeds}          # accuracy a run must reach

    def margin(row: dict[str, Any], seed: int) -> float:     # images above the threshold
        return (row["final_acc"] - threshold[seed]) * n

    base = [bsp[s] * n for s in seeds]
    sd = statistics.stdev(base)
    lines = [f"  BSP: {statistics.mean(base):.1f} +- {sd:.1f} images of {n} over {len(seeds)} "
             f"seeds (the threshold moves with it)"]
    for knob in sorted({k for s in seeds for k in fixed[s]}):
        ran = [s for s in seeds if knob in fixed[s]]
        margins = [margin(fixed[s][knob], s) for s in ran]
        met = sum(meets_target(fixed[s][knob]["final_acc"], bsp[s], target) for s in ran)
        near = sum(abs(m) <= sd for m in margins)
        lines.append(f"  knob {knob:g}: meets on {met}/{len(margins)}; margin "
                     f"{min(margins):+.1f} to {max(margins):+.1f}, "
                     f"within +-{sd:.1f} of the threshold on {near}")
    oracle = {s: oracle_knob(fixed[s], threshold[s]) for s in seeds}
    fragile = []
    for s in seeds:
        moved = {oracle_knob(fixed[s], threshold[s] + d * sd / n) for d in (-1, 1)}
        if moved != {oracle[s]}:
            others = "/".join(_knob(k) for k in sorted(moved - {oracle[s]}, key=_order))
            fragile.append(f"s{s} ({_knob(oracle[s])} or {others})")
    lines.append(f"  Oracle changes with the threshold moved by one sd on {len(fragile)}/"
                 f"{len(seeds)} seeds: {', '.join(fragile) or 'none'}")
    scouted = [s for s in seeds if s in scout]
    short = {s: -margin(scout[s], s) for s in scouted
             if not meets_target(scout[s]["final_acc"], bsp[s], target)}
    for s, images in short.items():
        within = "within" if images <= sd else "beyond"
        lines.append(f"  SkewScout s{s}: misses by {images:.1f} images ({within} one sd of "
                     f"BSP); Oracle {_knob(oracle[s])}")
    if scouted:
        lines.append(f"  SkewScout meets on {len(scouted) - len(short)}/{len(scouted)}")
    return lines


def report(rows: Sequence[dict[str, Any]], target: float, algorithm: str | None) -> list[str]:
    n = validation_images(rows)
    bsp: dict[tuple, dict[int, float]] = defaultdict(dict)
    fixed: dict[tuple, dict[int, dict[float, dict]]] = defaultdict(lambda: defaultdict(dict))
    scout: dict[tuple, dict[int, dict]] = defaultdict(dict)
    for r in rows:
        where = (r["model"], r["noniid_fraction"])
        if r["algorithm"] == "bsp":
            bsp[where][r["seed"]] = r["final_acc"]
        elif algorithm in (None, r["algorithm"]):
            cell = (*where, r["algorithm"])
            if r["mode"] == "skewscout":
                scout[cell][r["seed"]] = r
            elif r["knob"] is not None:
                fixed[cell][r["seed"]][float(r["knob"])] = r
    lines = []
    for cell in sorted(fixed):
        model, skew, alg = cell
        lines.append(f"{model} {alg} at {skew:.0%} non-IID")
        lines += cell_report(bsp[(model, skew)], fixed[cell], scout.get(cell, {}), target, n)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", help="study folders (their runs/ rows are merged)")
    parser.add_argument("--target", type=float, default=0.03, help="the study's target")
    parser.add_argument("--algorithm", help="only this algorithm")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    for out in args.out:
        rows.update(ResultsStore(out).rows)
    if not rows:
        parser.error(f"no result rows in {', '.join(args.out)}")
    print("\n".join(report(list(rows.values()), args.target, args.algorithm)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
