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
- each SkewScout run's margin, and for a miss whether it is within that sd;
- every fixed knob and SkewScout judged as a policy by the issue's per-seed goal (the target on
  every seed where some knob meets it, at <= 1.2x the seed's own Oracle's bytes on the mean), and
  whether any single knob, chosen knowing every seed's outcome, meets that goal: when none does,
  the goal asks for foresight of each seed's noise.

    python benchmarks/skewscout_margins.py OUT [OUT ...] [--target 0.03] [--algorithm fedavg]
                                          [--seeds 22-27] [--val-images 719]

docs/skewscout.md quotes it on seeds 0-27. It reads the folders' ``runs/`` rows and trains
nothing.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from training.study.oracle import (
    GOAL_RATIO,
    KnobOutcome,
    SeedGoal,
    best_fixed_in_hindsight,
    judge_per_seed,
    meets_target,
    seed_oracles,
    select_oracle,
)
from training.study.results import ResultsStore


def validation_images(rows: Iterable[dict[str, Any]], most: int = 100_000) -> int:
    """The smallest validation size that makes every final accuracy a whole number of images
    (accuracies are float32 fractions k / n). That holds when the partitions' shards of the
    validation set are equal (360 images, 5 partitions); otherwise give ``--val-images``."""
    accs = [r["final_acc"] for r in rows]
    for n in range(1, most + 1):
        if all(abs(a * n - round(a * n)) < 1e-3 for a in accs):
            return n
    raise ValueError(f"no validation size up to {most} makes every accuracy whole images (the "
                     "partitions' shards differ in size): give --val-images N")


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
    lines += policy_report(seeds, fixed, scout, bsp, target)
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


def _outcomes(runs: dict[int, dict[str, Any]], knob: float = math.nan) -> dict[int, KnobOutcome]:
    return {s: KnobOutcome(knob, r["final_acc"], r["bytes_per_iteration"]) for s, r in runs.items()}


def policy_line(name: str, goal: SeedGoal, limit: float) -> str:
    """One policy's seeds on target and bytes / the seed's own Oracle (``goal``)."""
    ratios = goal.spread
    sd = 0.0 if math.isnan(ratios.sd) else ratios.sd
    return (f"    {name}: meets on {len(goal.on_target)}/{goal.seeds}, "
            f"{ratios.mean:.2f} +- {sd:.2f}x the Oracle"
            f"{'  (meets the goal)' if goal.meets(limit) else ''}")


def policy_report(seeds: Sequence[int], fixed: dict[int, dict[float, dict[str, Any]]],
                  scout: dict[int, dict[str, Any]], bsp: dict[int, float], target: float,
                  limit: float = GOAL_RATIO) -> list[str]:
    """Each fixed knob and SkewScout as a policy, by the per-seed goal (module docstring)."""
    knobs = sorted(k for k in {k for s in seeds for k in fixed[s]}
                   if all(k in fixed[s] for s in seeds))
    grid = {k: _outcomes({s: fixed[s][k] for s in seeds}, k) for k in knobs}
    oracles = seed_oracles({s: bsp[s] for s in seeds}, grid, target)
    if not oracles:
        return ["  no seed has a knob that meets the target: no goal to judge"]
    lines = [f"  as policies, over the {len(oracles)} seeds where some knob meets the target "
             f"(goal: all of them, <= {limit:g}x on the mean):"]
    lines += [policy_line(f"knob {k:g} on every seed",
                          judge_per_seed(grid[k], bsp, oracles, target), limit) for k in knobs]
    if all(s in scout for s in oracles):
        lines.append(policy_line("SkewScout", judge_per_seed(_outcomes(scout), bsp, oracles,
                                                             target), limit))
    best = best_fixed_in_hindsight(grid, bsp, oracles, target, limit)
    lines.append("  a single knob, chosen knowing every seed's outcome, "
                 + ("does not meet the goal" if best is None else f"meets the goal: {best:g}"))
    return lines


def parse_seeds(text: str) -> set[int]:
    """``"22-27"``, ``"0,3,5"`` or a mix (``"0-3,9"``) -> the seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"--seeds {text!r}: give seeds as 22-27 or 0,3,5") from None
        if first > last:
            raise ValueError(f"--seeds {text!r}: {first}-{last} is empty; give low-high")
        seeds.update(range(first, last + 1))
    return seeds


def report(rows: Sequence[dict[str, Any]], target: float, algorithm: str | None,
           seeds: set[int] | None = None, val_images: int | None = None) -> list[str]:
    n = val_images or validation_images(rows)
    if seeds is not None:
        rows = [r for r in rows if r["seed"] in seeds]
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
    parser.add_argument("--seeds", help="only these seeds: 22-27, 0,3,5 or 0-3,9")
    parser.add_argument("--val-images", type=int, help="the validation set's size (else inferred)")
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds) if args.seeds else None
    except ValueError as err:
        parser.error(str(err))
    if args.val_images is not None and args.val_images < 1:
        parser.error(f"--val-images {args.val_images}: give the validation set's size, e.g. 360")
    rows: dict[str, dict[str, Any]] = {}
    for out in args.out:
        rows.update(ResultsStore(out).rows)
    if not rows:
        parser.error(f"no result rows in {', '.join(args.out)}")
    if seeds is not None and not any(r["seed"] in seeds for r in rows.values()):
        parser.error(f"no result rows for seeds {args.seeds} in {', '.join(args.out)}")
    try:
        lines = report(list(rows.values()), args.target, args.algorithm, seeds, args.val_images)
    except ValueError as err:
        parser.error(str(err))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
