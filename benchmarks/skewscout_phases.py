"""Where SkewScout's bytes go next to the Oracle's, by learning-rate phase (finding 4).

Runs one algorithm's fixed-knob grid and SkewScout on the default study's setting (or a study
config), evaluating at every learning-rate milestone, and prints for each run the bytes sent per
partition in each phase (SkewScout's traveling included) and the accuracy at each phase's end.
It then compares the Oracle (the cheapest fixed knob meeting the target at the *end*) with the
cheapest fixed knob that is within the target already at the end of the first phase: that
knob's first phase alone, as a multiple of the Oracle's whole run, shows how far a controller
that keeps the accuracy loss small *during* training is bound to be from this Oracle. For Gaia
that was SkewScout while hosts judged visitors as they traveled (1.93x on the default study);
judged with the host's pending updates (``Gaia.traveled_view``), it lets Gaia drift in the
first phase as the Oracle does.

    python benchmarks/skewscout_phases.py [--algorithm gaia] [--seed 0] [--noniid 1.0]
                                         [--config pipelines/configs/default.toml]
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import torch

from training.engine import TrainConfig
from training.study.config import load_study
from training.study.oracle import meets_target
from training.study.run import execute_run


def at(curve: list[list[float]], iteration: int) -> float:
    """The curve's value at ``iteration`` (it is evaluated there)."""
    return next(v for i, v in curve if i == iteration)


def phase_table(row: dict, ends: list[int]) -> tuple[list[float], list[float]]:
    """Bytes per partition sent in each phase (MB) and the accuracy at each phase's end (%)."""
    sent = [at(row["bytes_curve"], e) for e in ends]
    per_phase = [(b - a) / 1e6 for a, b in zip([0.0, *sent], sent, strict=False)]
    return per_phase, [100 * at(row["curve"], e) for e in ends]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="study config (default: the default study)")
    ap.add_argument("--algorithm", default="gaia", choices=("gaia", "fedavg", "dgc"))
    ap.add_argument("--model", default="gn-lenet")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noniid", type=float, default=1.0)
    args = ap.parse_args()
    study = load_study(args.config)
    if study.threads is not None:
        torch.set_num_threads(study.threads)
    iters = int(study.train["iterations"])
    milestones = study.train.get("lr_milestones", TrainConfig().lr_milestones)  # as trained
    ends = sorted({round(m * iters) for m in milestones} | {iters})
    every = math.gcd(*ends)      # evaluations land on every phase end; training is unchanged

    def run(**kw) -> dict:
        spec = study.spec(args.model, "bsp" if not kw else args.algorithm, args.noniid,
                          args.seed, **kw)
        return execute_run(replace(spec, train={**spec.train, "eval_every": every}))

    bsp = run()
    goal = 100 * (bsp["final_acc"] - study.target)
    print(f"{args.algorithm}, {args.model}, {args.noniid:.0%} non-IID, seed {args.seed}: "
          f"phases end at {ends}; target {goal:.1f}% (BSP {100 * bsp['final_acc']:.1f}% "
          f"- {100 * study.target:.0f} points)")
    print(f"{'knob':>10} | " + " | ".join(f"MB to {e:>3}, acc" for e in ends) + " | total MB")
    grid = {}
    for knob in study.grids[args.algorithm]:
        grid[knob] = phase_table(run(knob=knob), ends)
        mb, acc = grid[knob]
        print(f"{knob:>10} | " + " | ".join(f"{m:6.2f}, {a:5.1f}%" for m, a in zip(mb, acc,
                                                                                  strict=True))
              + f" | {sum(mb):6.2f}")
    scout = run(skewscout=True)
    mb, acc = phase_table(scout, ends)
    travel = scout["travel_bytes"] / scout["num_partitions"] / 1e6
    print(f"{'SkewScout':>10} | " + " | ".join(f"{m:6.2f}, {a:5.1f}%" for m, a in zip(
        mb, acc, strict=True)) + f" | {sum(mb):6.2f} (traveling {travel:.2f})")

    def meets(acc_pct: float) -> bool:
        return meets_target(acc_pct / 100, bsp["final_acc"], study.target)

    meets_end = [k for k, (_, a) in grid.items() if meets(a[-1])]
    early = [k for k, (_, a) in grid.items() if meets(a[0])]
    total = {k: sum(mb_k) for k, (mb_k, _) in grid.items()}
    if not meets_end:
        print("no fixed knob meets the target at the end: there is no Oracle")
        return
    oracle = min(meets_end, key=total.__getitem__)
    print(f"Oracle: {oracle} ({total[oracle]:.2f} MB, {grid[oracle][1][0]:.1f}% at iteration "
          f"{ends[0]})")
    if early:
        knob = min(early, key=lambda k: grid[k][0][0])
        print(f"within the target at iteration {ends[0]}: {knob} (cheapest); its first phase "
              f"alone sends {grid[knob][0][0]:.2f} MB = {grid[knob][0][0] / total[oracle]:.2f}x "
              "the Oracle's whole run")
    else:
        print(f"no fixed knob is within the target at iteration {ends[0]}")
    print(f"SkewScout: {sum(mb):.2f} MB = {sum(mb) / total[oracle]:.2f}x the Oracle "
          f"(final accuracy {acc[-1]:.1f}%, at iteration {ends[0]} {acc[0]:.1f}%)")


if __name__ == "__main__":
    main()
