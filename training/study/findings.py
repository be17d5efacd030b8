"""The study's findings, computed from the numbers (docs/reference.md §5); never hard-coded.

Each finding of the paper becomes a few checkable claims; each claim says "holds" or
"does not hold on this data" with the numbers behind it. The threshold for a "significant"
accuracy loss is the study's ``target`` (the same accuracy loss the Oracle allows against BSP).
Accuracy losses are in points (percentage points of top-1 accuracy); seeds are averaged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from training.skewscout.scout import KNOBS
from training.study.config import Experiment, StudyConfig
from training.study.oracle import (
    GOAL_RATIO,
    KnobOutcome,
    OracleChoice,
    best_fixed_in_hindsight,
    judge_per_seed,
    meets_target,
    seed_oracles,
    select_oracle,
)
from training.study.spread import (  # noqa: F401  (Claim: part of this module's API)
    RATIO_FLOOR,
    Claim,
    Spread,
    Verdict,
    all_of,
    judge,
    mean_of,
    spread_table,
)

DECENTRALIZED = KNOBS        # the algorithms with a communication knob (live: the registry's)


VALUES = ("final_acc", "acc_at_half", "bytes_per_iteration", "bsp_bytes_per_iteration")
BY_SEED = ("final_acc", "acc_at_half", "bytes_per_iteration")   # kept per seed for the claims


def experiment_rows(study: StudyConfig, exp: Experiment, rows: dict[str, dict]) -> list[dict]:
    """The experiment's finished result rows, in run order."""
    return [rows[s.run_id] for s in study.runs(exp) if s.run_id in rows]


def runs_frame(study: StudyConfig, exp: Experiment, rows: dict[str, dict]) -> pd.DataFrame:
    """The experiment's finished runs, one row per setting over its seeds.

    Columns: the setting's keys; the seeds' mean of :data:`VALUES`; ``final_acc_sd`` (sample sd,
    NaN for one seed); ``seeds`` (how many); ``<value>_by_seed`` ({seed: value}) for
    :data:`BY_SEED`, which the tables and claims pair seed by seed. A SkewScout row's ``knob`` is
    where that run's controller ended, which differs between seeds; it is dropped (NaN) so that
    the seeds of one setting make one row.
    """
    recs = experiment_rows(study, exp, rows)
    if not recs:
        return pd.DataFrame()
    df = pd.DataFrame(recs)
    df["knob"] = df["knob"].astype(float).where(df["mode"] != "skewscout")
    if "acc_at_half" not in df:          # rows stored before the column existed
        df["acc_at_half"] = float("nan")
    if "num_partitions" not in df:
        df["num_partitions"] = study.num_partitions
    keys = ["model", "algorithm", "mode", "knob", "noniid_fraction", "num_partitions"]
    out = []
    for key, part in df.groupby(keys, dropna=False, sort=True):
        rec = dict(zip(keys, key, strict=True))
        rec.update({v: float(part[v].mean()) for v in VALUES})
        rec["final_acc_sd"] = float(part["final_acc"].std(ddof=1)) if len(part) > 1 else math.nan
        rec["seeds"] = int(part["seed"].nunique())
        rec.update({f"{v}_by_seed": dict(zip(part["seed"].astype(int), part[v].astype(float),
                                             strict=True)) for v in BY_SEED})
        out.append(rec)
    return pd.DataFrame(out)


def experiment_frames(study: StudyConfig, rows: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Each experiment's :func:`runs_frame`, by name; experiments without finished runs left out.

    Computed once per study and shared by the claims and the figures.
    """
    frames = {exp.name: runs_frame(study, exp, rows) for exp in study.experiments}
    return {name: df for name, df in frames.items() if not df.empty}


def cell(part: pd.DataFrame, value: str = "final_acc") -> Spread | None:
    """The one setting in ``part`` (rows of :func:`runs_frame`) as a :class:`Spread` of
    ``value`` over its seeds; None when ``part`` is empty."""
    if part.empty:
        return None
    return Spread.of(part[f"{value}_by_seed"].iloc[0])


def accuracy(df: pd.DataFrame, model: str, algo: str, frac: float,
             n: int | None = None) -> Spread | None:
    """A fixed run's final accuracy in points (at ``n`` partitions, if given)."""
    part = df[(df["mode"] == "fixed") & (df["model"] == model) & (df["algorithm"] == algo)
              & (df["noniid_fraction"] == frac)]
    if n is not None:
        part = part[part["num_partitions"] == n]
    acc = cell(part)
    return None if acc is None else acc.map(lambda a: 100 * a)


def loss(df: pd.DataFrame, model: str, algo: str, frac: float,
         n: int | None = None) -> Spread | None:
    """IID minus ``frac`` accuracy, in points, seed by seed (None: either missing, or no seed
    in common)."""
    iid, skewed = accuracy(df, model, algo, 0.0, n), accuracy(df, model, algo, frac, n)
    if iid is None or skewed is None:
        return None
    out = iid - skewed
    return out if out.n else None


def _fixed_pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
    fixed = df[df["mode"] == "fixed"]
    return sorted({(r.model, r.algorithm) for r in fixed.itertuples()})


def loss_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%) per model x algorithm x fraction, and the loss vs the IID (0%) run, each a
    mean ± sd over the seeds (the loss seed by seed)."""
    fracs = sorted(df.loc[df["mode"] == "fixed", "noniid_fraction"].unique())
    cells = {}
    for model, algo in _fixed_pairs(df):
        row: dict[str, Spread | None] = {f"acc@{_pct(f)}": accuracy(df, model, algo, f)
                                         for f in fracs}
        if 0.0 in fracs:
            row.update({f"loss@{_pct(f)}": loss(df, model, algo, f) for f in fracs if f != 0.0})
        cells[(model, algo)] = row
    return spread_table(cells, ["model", "algorithm"])


def _pct(frac: float) -> str:
    return f"{int(round(frac * 100))}%"


def _losses_evidence(losses: Mapping[str, Spread]) -> str:
    return ", ".join(f"{a} {v.fmt(sign=True)}" for a, v in losses.items())


def claims_noniid(df: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    frac = max(exp.noniid_fractions)
    out = []
    for model in exp.models:
        losses = {a: loss(df, model, a, frac) for a in exp.algorithms}
        losses = {a: v for a, v in losses.items() if v is not None}
        dec = {a: v for a, v in losses.items() if a in DECENTRALIZED}
        if dec:
            parts = [judge(v, sig, above=True, floor=sig) for v in dec.values()]
            out.append(Claim("F1", f"{model}: every decentralized algorithm loses > {sig:.1f} "
                             "points under label skew", all_of(p[0] for p in parts),
                             f"{_losses_evidence(losses)}; " + "; ".join(
                                 f"{a}: {p[1]}" for a, p in zip(dec, parts, strict=True))))
        if "bsp" in losses:
            verdict, ev = judge(losses["bsp"], sig, above=False, floor=sig)
            out.append(Claim("F1", f"{model}: BSP loses <= {sig:.1f} points", verdict,
                             f"bsp {ev}"))
    return out


def claims_norm(df: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    frac = max(exp.noniid_fractions)
    bn = [m for m in exp.models if "bn" in m]
    gn = [m for m in exp.models if "gn" in m]
    out = []
    for b, g in zip(bn, gn, strict=False):
        lb, lg = loss(df, b, "bsp", frac), loss(df, g, "bsp", frac)
        if lb is not None:
            out.append(Claim("F2", f"BSP with BatchNorm ({b}) loses > {sig:.1f} points",
                             *judge(lb, sig, above=True, floor=sig)))
        if lg is not None:
            out.append(Claim("F2", f"GroupNorm ({g}) recovers BSP's accuracy (loss <= "
                             f"{sig:.1f})", *judge(lg, sig, above=False, floor=sig)))
        pairs = [(loss(df, b, a, frac), loss(df, g, a, frac))
                 for a in exp.algorithms if a in DECENTRALIZED]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        mb, mg = mean_of(x for x, _ in pairs), mean_of(y for _, y in pairs)
        if mb is not None and mg is not None and (mb - mg).n:
            verdict, ev = judge(mb - mg, 0.0, above=True, floor=sig)
            out.append(Claim("F2", "GroupNorm reduces the decentralized algorithms' mean loss",
                             verdict, f"BN {mb.fmt(sign=True)} vs GN {mg.fmt(sign=True)}; "
                             f"BN - GN {ev}"))
    return out


def _trend(points: Mapping[float, Spread]) -> Spread | None:
    """Spearman's rank correlation of ``x -> loss`` seed by seed, over the seeds every point
    has (a flat series, with no rank order, counts as 0)."""
    if len(points) < 2:
        return None
    seeds = set.intersection(*(set(p.by_seed) for p in points.values()))
    rho = {}
    for s in seeds:
        r = _spearman([(x, p.by_seed[s]) for x, p in points.items()])
        rho[s] = 0.0 if math.isnan(r) else r
    return Spread.of(rho) if rho else None


def _trend_claim(model: str, what: str, points: Mapping[float, Spread],
                 label: Callable[[float], str]) -> Claim | None:
    rho = _trend(points)
    if rho is None:
        return None
    verdict, ev = judge(rho, 0.8, above=True, floor=None, digits=2)
    means = ", ".join(f"{label(x)}: {v.fmt(sign=True)}" for x, v in points.items())
    return Claim("F3", f"{model}: the decentralized algorithms' mean loss grows with {what} "
                 "(Spearman >= 0.8)", verdict, f"rho {ev}; {means}")


def claims_skew_degree(df: pd.DataFrame, exp: Experiment,
                       sig: float) -> list[Claim]:  # noqa: ARG001  (same signature as the others)
    fracs = sorted(f for f in exp.noniid_fractions if f > 0)
    out = []
    for model in exp.models:
        points = {}
        for f in fracs:
            m = mean_of(v for a in exp.algorithms if a in DECENTRALIZED
                        and (v := loss(df, model, a, f)) is not None)
            if m is not None:
                points[f] = m
        claim = _trend_claim(model, "the degree of skew", points, _pct)
        if claim is not None:
            out.append(claim)
    return out


def _spearman(points: Sequence[tuple[float, float]]) -> float:
    """Spearman's rank correlation of ``(x, y)`` points (the F3 trends)."""
    xs, ys = zip(*points, strict=True)
    return float(pd.Series(xs).corr(pd.Series(ys), method="spearman"))


def _skewed(df: pd.DataFrame) -> float:
    return float(df.loc[df["mode"] == "fixed", "noniid_fraction"].max())


def partitions_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x algorithm: the IID and most-skewed accuracy (%) and the loss at each number
    of partitions (columns ``N=n IID``, ``N=n non-IID``, ``N=n loss``), each mean ± sd."""
    fixed = df[df["mode"] == "fixed"]
    skewed = _skewed(df)
    ns = sorted(int(n) for n in fixed["num_partitions"].unique())
    if not skewed > 0:
        return pd.DataFrame()
    at = fixed.groupby("num_partitions")["noniid_fraction"].agg(set)
    ns = [n for n in ns if {0.0, skewed} <= at[n]]      # else no IID or no skewed run at N
    cells = {}
    for model, algo in _fixed_pairs(df):
        row: dict[str, Spread | None] = {}
        for n in ns:
            row[f"N={n} IID"] = accuracy(df, model, algo, 0.0, n)
            row[f"N={n} non-IID"] = accuracy(df, model, algo, skewed, n)
            row[f"N={n} loss"] = loss(df, model, algo, skewed, n)
        cells[(model, algo)] = row
    table = spread_table(cells, ["model", "algorithm"])
    return table if any(c.endswith(" loss") for c in table.columns) else pd.DataFrame()


def claims_partitions(df: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    """Finding 3's second half: more partitions are worse (the mean decentralized loss grows
    with N), and BSP stays within ``sig`` at every N."""
    skewed = _skewed(df)
    if not skewed > 0:
        return []
    ns = sorted(int(n) for n in df["num_partitions"].unique())
    ns = [n for n in ns if any(loss(df, m, a, skewed, n) is not None
                               for m in exp.models for a in exp.algorithms)]
    out = []
    for model in exp.models:
        # only algorithms measured at every N, so that a failed run cannot bend the trend
        dec = [a for a in exp.algorithms if a in DECENTRALIZED
               and all(loss(df, model, a, skewed, n) is not None for n in ns)]
        points = {n: m for n in ns if dec and (m := mean_of(
            loss(df, model, a, skewed, n) for a in dec)) is not None}
        claim = _trend_claim(model, "the number of partitions", points, lambda n: f"N={n}")
        if claim is not None:
            out.append(claim)
        bsp = {n: v for n in ns if (v := loss(df, model, "bsp", skewed, n)) is not None}
        if bsp:
            parts = {n: judge(v, sig, above=False, floor=sig) for n, v in bsp.items()}
            out.append(Claim("F3", f"{model}: BSP loses <= {sig:.1f} points at every number of "
                             "partitions", all_of(p[0] for p in parts.values()),
                             "; ".join(f"N={n}: {p[1]}" for n, p in parts.items())))
    return out


def oracle_of(grid: pd.DataFrame, baseline_acc: float, target: float) -> OracleChoice:
    """The Oracle among an algorithm's fixed-knob rows of :func:`runs_frame` (seeds' means)."""
    return select_oracle([KnobOutcome(float(r.knob), float(r.final_acc),
                                      float(r.bytes_per_iteration)) for r in grid.itertuples()],
                         baseline_acc, target)


class BspGroup(NamedTuple):
    """One model x non-IID fraction slice of :func:`runs_frame` and its BSP baseline."""

    model: str
    noniid_fraction: float
    part: pd.DataFrame
    bsp_acc: float
    bsp_bytes: float


def bsp_groups(df: pd.DataFrame) -> Iterator[BspGroup]:
    """Pair every run with the BSP run of the same model and non-IID fraction (seeds averaged).

    The one pairing used by the SkewScout table and its figure; slices without BSP are skipped.
    """
    if df.empty:            # no finished runs: no columns to group by
        return
    for (model, frac), part in df.groupby(["model", "noniid_fraction"]):
        bsp = part[part["algorithm"] == "bsp"]
        if bsp.empty:
            continue
        yield BspGroup(model, float(frac), part, float(bsp["final_acc"].iloc[0]),
                       float(bsp["bytes_per_iteration"].iloc[0]))


class ScoutCell(NamedTuple):
    """One model x fraction x algorithm of a SkewScout experiment: the table's row (means) and
    the cells its claims judge, seed by seed."""

    row: dict
    acc_vs_bsp: Spread            # SkewScout minus BSP accuracy, points
    saving_vs_bsp: Spread         # BSP bytes / SkewScout bytes
    vs_oracle: Spread             # SkewScout bytes / the Oracle's


def skewscout_cells(df: pd.DataFrame, exp: Experiment, target: float) -> list[ScoutCell]:
    out = []
    for g in bsp_groups(df):
        bsp = g.part[g.part["algorithm"] == "bsp"]
        b_acc, b_bytes = cell(bsp), cell(bsp, "bytes_per_iteration")
        for algo in exp.algorithms:
            grid = g.part[(g.part["algorithm"] == algo) & (g.part["mode"] == "fixed")]
            scout = g.part[(g.part["algorithm"] == algo) & (g.part["mode"] == "skewscout")]
            if grid.empty or scout.empty:
                continue
            oracle = oracle_of(grid, g.bsp_acc, target)
            o_row = grid[grid["knob"] == oracle.knob]
            o_acc, o_bytes = cell(o_row), cell(o_row, "bytes_per_iteration")
            s_acc, s_bytes = cell(scout), cell(scout, "bytes_per_iteration")
            s_mean, sb_mean = float(scout["final_acc"].iloc[0]), float(
                scout["bytes_per_iteration"].iloc[0])
            row = {
                "model": g.model, "noniid": _pct(g.noniid_fraction), "algorithm": algo,
                "seeds": int(scout["seeds"].iloc[0]),
                "bsp_acc": 100 * g.bsp_acc, "bsp_acc sd": 100 * b_acc.sd,
                "oracle_knob": oracle.knob, "oracle_ok": oracle.feasible,
                "oracle_acc": 100 * oracle.final_acc, "oracle_acc sd": 100 * o_acc.sd,
                "oracle_acc_at_half": 100 * float(o_row["acc_at_half"].iloc[0]),
                "skewscout_acc": 100 * s_mean, "skewscout_acc sd": 100 * s_acc.sd,
                "skewscout_acc_at_half": 100 * float(scout["acc_at_half"].iloc[0]),
                "skewscout_ok": meets_target(s_mean, g.bsp_acc, target),
                "saving_vs_bsp": g.bsp_bytes / max(sb_mean, 1e-12),
                "oracle_saving_vs_bsp": g.bsp_bytes / max(oracle.bytes_per_iteration, 1e-12),
                "vs_oracle": sb_mean / max(oracle.bytes_per_iteration, 1e-12),
                **per_seed_columns(bsp, grid, scout, target),
            }
            out.append(ScoutCell(
                row, (s_acc - b_acc).map(lambda d: 100 * d),
                b_bytes.paired(s_bytes, lambda b, s: b / max(s, 1e-12)),
                s_bytes.paired(o_bytes, lambda s, o: s / max(o, 1e-12))))
    return out


def _outcomes(row: pd.Series) -> dict[int, KnobOutcome]:
    """One setting's runs of :func:`runs_frame`, seed by seed."""
    nbytes = row["bytes_per_iteration_by_seed"]
    return {int(s): KnobOutcome(float(row.get("knob", math.nan)), float(a), float(nbytes[s]))
            for s, a in row["final_acc_by_seed"].items() if s in nbytes}


def per_seed_columns(bsp: pd.DataFrame, grid: pd.DataFrame, scout: pd.DataFrame,
                     target: float) -> dict:
    """The goal judged seed by seed, each seed against its own BSP and its own Oracle, over the
    seeds where some grid knob meets the target (docs/skewscout.md): SkewScout's seeds on
    target, its bytes / its seed's Oracle's (mean, ``sd``), and the knob that, run on every
    seed, would meet that goal at the fewest bytes ("none": no knob does)."""
    base = bsp["final_acc_by_seed"].iloc[0]
    knobs = {float(r["knob"]): _outcomes(r) for _, r in grid.iterrows()}
    oracles = seed_oracles(base, knobs, target)
    goal = judge_per_seed(_outcomes(scout.iloc[0]), base, oracles, target)
    ratios = goal.spread
    best = best_fixed_in_hindsight(knobs, base, oracles, target)
    return {"seeds_on_target": f"{len(goal.on_target)}/{goal.seeds}",
            "vs_own_oracle": ratios.mean, "vs_own_oracle sd": ratios.sd,
            "fixed_in_hindsight": "none" if best is None else f"{best:g}"}


def skewscout_table(df: pd.DataFrame, exp: Experiment, target: float) -> pd.DataFrame:
    """Per model x algorithm x fraction: BSP, Oracle and SkewScout accuracy (means, ``... sd``
    across seeds) and communication (ratios of the seeds' mean bytes). The Oracle is the grid
    value chosen on the seeds' means; ``skewscout_ok`` compares means (the claims judge the
    spread). The last columns judge the goal seed by seed (:func:`per_seed_columns`)."""
    return pd.DataFrame([c.row for c in skewscout_cells(df, exp, target)]).round(2)


def claims_skewscout(cells: Sequence[ScoutCell], sig: float) -> list[Claim]:
    out = []
    for c in cells:
        r = c.row
        tag = f"{r['model']} {r['noniid']} {r['algorithm']}"
        acc = judge(c.acc_vs_bsp, -sig, above=True, floor=sig)
        ev = (f"acc {r['skewscout_acc']:.1f} vs BSP {r['bsp_acc']:.1f}, "
              f"{r['saving_vs_bsp']:.1f}x less than BSP, {r['vs_oracle']:.2f}x the Oracle "
              f"(knob {r['oracle_knob']:g}); SkewScout - BSP {acc[1]}")
        out.append(Claim("F4", f"{tag}: SkewScout stays within the target of BSP's accuracy",
                         acc[0], ev))
        out.append(Claim("F4", f"{tag}: SkewScout sends less than BSP",
                         *judge(c.saving_vs_bsp, 1.0, above=True, floor=RATIO_FLOOR, digits=2)))
        for limit, who in ((1.5, "paper"), (GOAL_RATIO, "our goal")):
            ratio = judge(c.vs_oracle, limit, above=False, floor=RATIO_FLOOR, digits=2)
            out.append(Claim("F4", f"{tag}: SkewScout within {limit:g}x the Oracle ({who})",
                             all_of([acc[0], ratio[0]]),
                             f"x the Oracle {ratio[1]}; accuracy: {acc[0].value}"))
    return out


def all_claims(study: StudyConfig, rows: dict[str, dict],
               frames: Mapping[str, pd.DataFrame] | None = None) -> tuple[list[Claim], dict]:
    """Every claim of the study and the tables behind them (experiment name -> DataFrame).

    ``frames``: :func:`experiment_frames` of ``rows`` when the caller has them already.
    """
    frames = experiment_frames(study, rows) if frames is None else frames
    claims: list[Claim] = []
    tables: dict[str, pd.DataFrame] = {}
    sig = 100 * study.target
    # imported here: training.study.baselines builds on this module's Claim and tables
    from training.study import baselines

    base = baselines.baselines_frame(study, rows, only=frames.keys())
    for exp in study.experiments:
        if exp.kind == "baselines":
            if not base.empty and (base["experiment"] == exp.name).any():
                tables[exp.name] = baselines.baselines_table(base, exp)
            continue
        df = frames.get(exp.name)
        if df is None or df.empty:
            continue
        if exp.kind == "skewscout":
            cells = skewscout_cells(df, exp, study.target)
            tables[exp.name] = pd.DataFrame([c.row for c in cells]).round(2)
            claims += claims_skewscout(cells, sig)
            continue
        if exp.kind == "partitions":
            tables[exp.name] = partitions_table(df)
            claims += claims_partitions(df, exp, sig)
            continue
        tables[exp.name] = loss_table(df)
        rule = {"noniid": claims_noniid, "norm": claims_norm, "skew_degree": claims_skew_degree}
        claims += rule[exp.kind](df, exp, sig)
    claims += baselines.baselines_claims(study, base, sig)
    return claims, tables


def seeds_line(study: StudyConfig) -> str:
    """How many seeds a cell has, and the verdict rule, for the summary's header."""
    n = len(study.seeds)
    seeds = ", ".join(str(s) for s in study.seeds)
    cells = ("each cell is the mean ± sd (sample sd) over its seeds" if n > 1
             else "each cell is one run: no spread")
    floor = ("the sd across seeds" if n > 1 else
             f"{100 * study.target:.1f} points, the target (1 seed)")
    return (f"{n} seed{'s' if n != 1 else ''} ({seeds}): {cells}; a cell with fewer (a failed "
            f"run) says n=. A finding holds or does not hold only when its margin exceeds "
            f"{floor}; otherwise it is inconclusive (docs/training.md).")


def summary_markdown(study: StudyConfig, claims: Sequence[Claim], tables: dict,
                     figures: Sequence[str] = ()) -> str:
    """The study's summary page: tables (mean ± sd), findings, and links to ``figures`` (paths
    relative to the page)."""
    parts = [f"# Study `{study.name}`\n",
             f"Dataset {study.dataset.name}, {study.num_partitions} partitions, "
             f"target accuracy loss {100 * study.target:.1f} points.\n",
             seeds_line(study) + "\n"]
    for exp in study.experiments:
        if exp.name in tables and not tables[exp.name].empty:
            parts.append(f"## {exp.name} ({exp.kind})\n\n{markdown_table(tables[exp.name])}\n")
    parts.append("## Findings\n")
    parts += [c.line() for c in claims]
    if figures:
        parts.append("\n## Figures\n")
        parts += [f"![{Path(f).stem.replace('_', ' ')}]({f})\n" for f in figures]
    return "\n".join(parts) + "\n"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (pandas' to_markdown needs tabulate, which we avoid). A column
    ``c`` with companions ``c sd`` and ``c n`` (:func:`spread_table`) shows as ``mean ± sd``,
    with ``(n=k)`` where a cell has fewer seeds than the table's most."""
    flat = df.reset_index() if df.index.name or df.index.nlevels > 1 else df
    cols = [str(c) for c in flat.columns]
    shown = [c for c in cols if not _companion(c, cols)]
    counts = [c for c in cols if c.endswith(" n") and c[:-2] in cols]
    most = int(flat[counts].max().max()) if counts and len(flat) else 0
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for rec in flat.to_dict("records"):
        lines.append("| " + " | ".join(_cell_text(rec, c, most) for c in shown) + " |")
    return "\n".join(lines)


def _companion(col: str, cols: Sequence[str]) -> bool:
    return any(col.endswith(suffix) and col[:-len(suffix)] in cols for suffix in (" sd", " n"))


def _cell_text(rec: dict, col: str, most: int) -> str:
    v = rec[col]
    if not isinstance(v, float):
        return str(v)
    n = rec.get(f"{col} n")
    if n == 0 or math.isnan(v):
        return "-"
    text = f"{v:g}"
    sd = rec.get(f"{col} sd")
    if sd is not None and not math.isnan(sd):
        text += f" ± {sd:g}"
    if n is not None and n < most:
        text += f" (n={n})"
    return text
