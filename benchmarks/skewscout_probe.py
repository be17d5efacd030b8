"""What SkewScout's start probe can read: visitors' accuracy and loss at the probe's iterations.

Runs each seed's fixed run at the knob the probe sees (Gaia T0 0.3, the loosest; FedAvg IterLocal
50, the averaging view's middle) from a SkewScout study config, and at every iteration of the
probe's jitter range travels every ordered pair as the probe would (200 samples of the host's
training data, the model as it traveled). It prints, per algorithm and skew, the range of the
visitor's accuracy on its host's sample and of the loss (host's model minus visitor), over every
pair and over the pair the probe uses (``single`` pairing's first round: partition 0 to 1).
docs/skewscout.md ("The probe reads the visitor's accuracy") quotes it on seeds 0-15 (5 minutes
on 2 cores).

    python benchmarks/skewscout_probe.py [--config pipelines/configs/digits_skewscout_fresh.toml]
                                         [--seeds 0-15] [--first 19] [--last 31] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import torch

from training.skewscout.scout import travel
from training.study.config import load_study
from training.study.run import build_trainer

PROBED_KNOB = {"gaia": 0.3, "fedavg": 50.0}     # where each algorithm sits at the probe
PROBE_PAIR = (0, 1)


def probe_reads(spec, first: int, last: int, sample_size: int) -> list[dict]:
    """Every ordered pair's (host accuracy, visitor accuracy as traveled) at each iteration in
    [first, last] of one fixed run; the run trains on the study's schedule (its decays too)."""
    trainer, _ = build_trainer(spec)
    reads = []
    while trainer.iteration < last:
        trainer.step()
        if trainer.iteration >= first:
            rep = travel(trainer, 0, sample_size=sample_size, pairing="all_pairs",
                         seed=spec.seed, as_traveled=True)
            reads += [{"iteration": int(trainer.iteration), "pair": list(p), "host": h,
                       "visitor": v} for p, h, v in zip(rep.pairs, rep.local_acc,
                                                        rep.as_traveled_acc, strict=True)]
    return reads


def span(values: list[float]) -> str:
    q = np.quantile(values, [0, 0.01, 0.05, 1])
    return f"{q[0]:.3f}-{q[3]:.3f} (1%: {q[1]:.3f}, 5%: {q[2]:.3f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="pipelines/configs/digits_skewscout_fresh.toml")
    ap.add_argument("--seeds", default="0-15", help="a range, e.g. 0-15")
    ap.add_argument("--first", type=int, default=19, help="first iteration read")
    ap.add_argument("--last", type=int, default=31, help="last iteration read")
    ap.add_argument("--json", default=None, help="also write every read here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    lo, hi = (int(x) for x in args.seeds.split("-"))
    study = replace(load_study(args.config), seeds=tuple(range(lo, hi + 1)))
    sample = int(study.skewscout.get("sample_size", 200))
    rows = []
    for spec in study.all_runs():
        if spec.mode != "fixed" or PROBED_KNOB.get(spec.algorithm) != spec.knob:
            continue
        for read in probe_reads(spec, args.first, args.last, sample):
            rows.append({"algorithm": spec.algorithm, "noniid": spec.noniid_fraction,
                         "seed": spec.seed, **read})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    print(f"seeds {args.seeds}, iterations {args.first}-{args.last}, {sample} host samples")
    for algorithm in PROBED_KNOB:
        for noniid in sorted({r["noniid"] for r in rows}):
            cell = [r for r in rows if r["algorithm"] == algorithm and r["noniid"] == noniid]
            if not cell:
                continue
            probe = [r for r in cell if tuple(r["pair"]) == PROBE_PAIR]
            print(f"{algorithm} at {noniid:.0%} non-IID ({len(cell)} reads)")
            for label, sub in (("every pair", cell), (f"pair {PROBE_PAIR}", probe)):
                print(f"  {label:>11}: visitor {span([r['visitor'] for r in sub])}; "
                      f"loss {span([r['host'] - r['visitor'] for r in sub])}")


if __name__ == "__main__":
    main()
