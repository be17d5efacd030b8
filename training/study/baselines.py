"""The baselines study's findings: which methods close the skew gap, and at what traffic; whether
FixBN or FedBN close BatchNorm's gap to GroupNorm; and at which communication frequency GroupNorm
stops being the better choice (docs/study-config.md, the ``baselines`` kind).

Every ``baselines`` experiment of a study feeds one frame (:func:`baselines_frame`), so that a
FixBN experiment (``train = {norm_stats = "fixbn"}``) is compared with the plain BatchNorm and
GroupNorm runs of another experiment, and a Dirichlet experiment with its IID control. A row is a
*setting*: a variant (the model, ``+ FixBN`` when its BatchNorm statistics are frozen), an
algorithm, its knob and a partitioning (``IID``, ``label skew 100%``, ``dirichlet(alpha=0.1)``).
Cells are accuracies in points, paired seed by seed; verdicts follow training/study/spread.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterator, Mapping
from functools import cache

import pandas as pd

from training.algorithms import create_algorithm
from training.skewscout.scout import ordered_grid
from training.study.config import KNOB_OF, Experiment, RunSpec, StudyConfig
from training.study.spread import Claim, Spread, Verdict, all_of, judge, spread_table

IID = "IID"
FIXBN = " + FixBN"
KEYS = ("variant", "algorithm", "knob", "partitioning")


def variant_of(spec: RunSpec) -> str:
    """The model, and ``+ FixBN`` when the run freezes its BatchNorm statistics."""
    return spec.model + (FIXBN if spec.train.get("norm_stats") == "fixbn" else "")


def partitioning_of(spec: RunSpec) -> str:
    """``IID`` for a fraction of 0, else the partitioner and its skew, in words."""
    if spec.noniid_fraction == 0.0 or spec.partitioner == "iid":
        return IID
    if spec.partitioner == "label_skew":
        return f"label skew {spec.noniid_fraction:.0%}"
    params = ", ".join(f"{k}={v}" for k, v in sorted(spec.partitioner_params.items()))
    return f"{spec.partitioner}({params})"


@cache
def _knob(algorithm: str, params: str) -> float:
    """The knob an algorithm runs at with these (JSON-keyed) params: NaN without a knob."""
    knob = create_algorithm(algorithm, **json.loads(params)).knob
    return math.nan if knob is None else float(knob)


def knob_of(spec: RunSpec) -> float:
    """The run's knob, filled with the algorithm's default when the study leaves it out."""
    if spec.knob is not None:
        return float(spec.knob)
    return _knob(spec.algorithm, json.dumps(spec.algorithm_params, sort_keys=True, default=str))


def baselines_frame(study: StudyConfig, rows: Mapping[str, dict],
                    only: Collection[str] | None = None) -> pd.DataFrame:
    """One record per (baselines experiment, finished fixed-knob run): :data:`KEYS`, the
    experiment, ``run_id``, ``seed``, ``acc`` (points) and ``bytes_pct`` (bytes per iteration,
    % of what BSP sends for the same model). ``only``: the experiments to read (all if None)."""
    recs = []
    for exp in study.experiments:
        if exp.kind != "baselines" or (only is not None and exp.name not in only):
            continue
        for spec in study.runs(exp):
            row = rows.get(spec.run_id)
            if row is None or spec.mode != "fixed":
                continue
            recs.append({
                "experiment": exp.name, "run_id": spec.run_id, "model": spec.model,
                "variant": variant_of(spec), "algorithm": spec.algorithm, "knob": knob_of(spec),
                "partitioning": partitioning_of(spec), "seed": int(spec.seed),
                "acc": 100 * float(row["final_acc"]),
                "bytes_pct": 100 * float(row["bytes_per_iteration"])
                / max(float(row["bsp_bytes_per_iteration"]), 1e-12),
                "swept": spec.algorithm in exp.sweep})
    return pd.DataFrame(recs)


def cell(df: pd.DataFrame, variant: str, algorithm: str, partitioning: str,
         knob: float | None = None, value: str = "acc") -> Spread | None:
    """A setting's ``value`` over its seeds (``knob`` None: any; a run shared by several
    experiments counts once, and the first run of a seed when two partitioners give one
    partitioning, e.g. two IID controls)."""
    part = df[(df["variant"] == variant) & (df["algorithm"] == algorithm)
              & (df["partitioning"] == partitioning)]
    if knob is not None:
        part = part[(part["knob"] == knob) | (part["knob"].isna() & math.isnan(knob))]
    part = part.drop_duplicates("run_id").drop_duplicates("seed")
    if part.empty:
        return None
    return Spread.of(dict(zip(part["seed"], part[value], strict=True)))


def _gap(a: Spread | None, b: Spread | None) -> Spread | None:
    """``a - b`` seed by seed (None: either missing, or no seed in common)."""
    if a is None or b is None:
        return None
    out = a - b
    return out if out.n else None


def bsp_cell(df: pd.DataFrame, variant: str, partitioning: str) -> Spread | None:
    """BSP's accuracy for ``variant`` (else for its plain model) under ``partitioning``."""
    got = cell(df, variant, "bsp", partitioning)
    return got if got is not None else cell(df, variant.removesuffix(FIXBN), "bsp", partitioning)


def settings(df: pd.DataFrame) -> list[tuple[str, str, float, str]]:
    """The frame's settings (:data:`KEYS`), sorted."""
    keys = df[list(KEYS)].drop_duplicates()
    return sorted(keys.itertuples(index=False, name=None),
                  key=lambda k: (k[0], k[1], -1.0 if math.isnan(k[2]) else k[2], k[3] != IID, k[3]))


def baselines_table(df: pd.DataFrame, exp: Experiment) -> pd.DataFrame:
    """The experiment's settings: accuracy (%), loss vs its IID run, gap to BSP under the same
    partitioning (points; positive: below BSP) and bytes (% of BSP's), each mean ± sd."""
    mine = df[df["experiment"] == exp.name]
    cells = {}
    for variant, algorithm, knob, partitioning in settings(mine):
        acc = cell(df, variant, algorithm, partitioning, knob)
        row: dict[str, Spread | None] = {"acc": acc}
        skewed = partitioning != IID
        row["loss vs IID"] = _gap(cell(df, variant, algorithm, IID, knob), acc) if skewed else None
        row["gap to BSP"] = (None if algorithm == "bsp"
                             else _gap(bsp_cell(df, variant, partitioning), acc))
        row["bytes % of BSP"] = cell(df, variant, algorithm, partitioning, knob, "bytes_pct")
        cells[(variant, algorithm, knob, partitioning)] = row
    return spread_table(cells, list(KEYS))


def _skewed(df: pd.DataFrame) -> list[str]:
    return sorted(p for p in df["partitioning"].unique() if p != IID)


def _main(df: pd.DataFrame) -> pd.DataFrame:
    """The settings at the study's knobs (a sweep's other values left out)."""
    return df[~df["swept"] | df["run_id"].isin(df.loc[~df["swept"], "run_id"])]


def setting_label(algorithm: str, knob: float) -> str:
    name = KNOB_OF.get(algorithm)
    return algorithm if name is None or math.isnan(knob) else f"{algorithm} ({name}={knob:g})"


def claims_gap(df: pd.DataFrame, sig: float) -> Iterator[tuple[str, Verdict, str]]:
    """Per skewed partitioning and method: does it close the skew gap (accuracy within ``sig``
    points of BSP's under the same partitioning), and at what traffic."""
    main = _main(df)
    for p in _skewed(main):
        for variant, algorithm, knob, part in settings(main[main["partitioning"] == p]):
            if algorithm == "bsp":
                continue
            acc = cell(df, variant, algorithm, part, knob)
            gap = _gap(bsp_cell(df, variant, part), acc)
            if gap is None or acc is None:
                continue
            verdict, ev = judge(gap, sig, above=False, floor=sig)
            traffic = cell(df, variant, algorithm, part, knob, "bytes_pct")
            iid_loss = _gap(cell(df, variant, algorithm, IID, knob), acc)
            yield (f"{p}: {variant} {setting_label(algorithm, knob)} closes the skew gap (within "
                   f"{sig:.1f} points of BSP)", verdict,
                   f"acc {acc.fmt()}, BSP - it {ev}; "
                   f"{traffic.fmt(2) if traffic else '?'}% of BSP's bytes"
                   + (f"; loss vs IID {iid_loss.fmt(sign=True)}" if iid_loss else ""))


def _pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(BatchNorm model, its GroupNorm twin) pairs present in the frame (bn-x / gn-x)."""
    variants = set(df["variant"])
    return sorted((m, "gn-" + m[3:]) for m in variants
                  if m.startswith("bn-") and "gn-" + m[3:] in variants)


def claims_norm(df: pd.DataFrame, sig: float) -> Iterator[tuple[str, Verdict, str]]:
    """Per skewed partitioning and averaging algorithm: BatchNorm trails GroupNorm by more than
    ``sig``; FixBN and FedBN (on the BatchNorm model) come within ``sig`` of GroupNorm."""
    main = _main(df)
    for p in _skewed(main):
        here = main[main["partitioning"] == p]
        for bn, gn in _pairs(here):
            for _, algorithm, knob, _ in settings(here[here["variant"] == gn]):
                g = cell(df, gn, algorithm, p, knob)
                tag = f"{p} {setting_label(algorithm, knob)}"
                gap = _gap(g, cell(df, bn, algorithm, p, knob))
                if gap is not None:
                    yield (f"{tag}: {bn} trails {gn} by > {sig:.1f} points",
                           *judge(gap, sig, above=True, floor=sig))
                rivals = [(f"FixBN ({bn}{FIXBN})", cell(df, bn + FIXBN, algorithm, p, knob))]
                if algorithm == "fedavg":
                    # FedBN is FedAvg with local BatchNorm: compared at the same IterLocal
                    rivals.append((f"FedBN ({bn})", cell(df, bn, "fedbn", p, knob)))
                for who, acc in rivals:
                    rival_gap = _gap(g, acc)
                    if rival_gap is None:
                        continue
                    verdict, ev = judge(rival_gap, sig, above=False, floor=sig)
                    yield (f"{tag}: {who} closes BatchNorm's gap to {gn} (within {sig:.1f} "
                           "points)", verdict,
                           f"{gn} - it {ev}; plain BN gap {gap.fmt(sign=True) if gap else '?'}")


def claims_sweep(df: pd.DataFrame, study: StudyConfig,
                 sig: float) -> Iterator[tuple[str, Verdict, str]]:
    """Per sweep (experiment x algorithm x skewed partitioning x BN/GN pair): GroupNorm stays
    better than BatchNorm (GN - BN > 0 beyond the spread) at every knob value; the evidence
    names the value, going from the least communication to the most, at which it stops."""
    for exp in study.experiments:
        mine = df[df["experiment"] == exp.name]
        for algorithm, values in exp.sweep.items():
            knob_name = KNOB_OF[algorithm]
            # most -> least communication, walked from the least
            order = list(reversed(ordered_grid(knob_name, [float(v) for v in values])))
            for p in _skewed(mine):
                for bn, gn in _pairs(mine[mine["partitioning"] == p]):
                    parts = {}
                    for k in order:
                        diff = _gap(cell(mine, gn, algorithm, p, k),
                                    cell(mine, bn, algorithm, p, k))
                        if diff is not None:
                            parts[k] = (diff, *judge(diff, 0.0, above=True, floor=sig))
                    if not parts:
                        continue
                    stop = next((k for k, (_, v, _) in parts.items() if v is not Verdict.HOLDS),
                                None)
                    where = ("not within the sweep" if stop is None else
                             f"at {knob_name}={stop:g} ({parts[stop][1].value})")
                    ev = "; ".join(f"{knob_name}={k:g}: {gn} - {bn} {d.fmt(sign=True)}"
                                   for k, (d, _, _) in parts.items())
                    yield (f"{exp.name} {p} {algorithm}: {gn} beats {bn} at every {knob_name} "
                           f"of the sweep", all_of(v for _, v, _ in parts.values()),
                           f"going from the least communication to the most, GroupNorm stops "
                           f"being the better choice {where}; {ev}")


def baselines_claims(study: StudyConfig, df: pd.DataFrame, sig: float) -> list[Claim]:
    """Every baselines claim: B1 the skew gap, B2 BatchNorm vs GroupNorm, B3 the sweeps."""
    if df.empty:
        return []
    return ([Claim("B1", *c) for c in claims_gap(df, sig)]
            + [Claim("B2", *c) for c in claims_norm(df, sig)]
            + [Claim("B3", *c) for c in claims_sweep(df, study, sig)])
