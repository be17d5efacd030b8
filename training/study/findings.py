"""The study's findings, computed from the numbers (docs/reference.md §5); never hard-coded.

Each finding of the paper becomes a few checkable claims; each claim says "holds" or
"does not hold on this data" with the numbers behind it. The threshold for a "significant"
accuracy loss is the study's ``target`` (the same accuracy loss the Oracle allows against BSP).
Accuracy losses are in points (percentage points of top-1 accuracy); seeds are averaged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd

from training.skewscout.scout import KNOBS
from training.study.config import Experiment, StudyConfig
from training.study.oracle import KnobOutcome, OracleChoice, meets_target, select_oracle

DECENTRALIZED = KNOBS        # the algorithms with a communication knob (live: the registry's)


@dataclass(frozen=True)
class Claim:
    finding: str
    text: str
    holds: bool
    evidence: str

    def line(self) -> str:
        verdict = "holds" if self.holds else "does not hold on this data"
        return f"- **{self.finding}** {self.text}: **{verdict}** ({self.evidence})"


def experiment_rows(study: StudyConfig, exp: Experiment, rows: dict[str, dict]) -> list[dict]:
    """The experiment's finished result rows, in run order."""
    return [rows[s.run_id] for s in study.runs(exp) if s.run_id in rows]


def runs_frame(study: StudyConfig, exp: Experiment, rows: dict[str, dict]) -> pd.DataFrame:
    """The experiment's finished runs, seeds averaged (final_acc, bytes).

    A SkewScout row's ``knob`` is where that run's controller ended, which differs between
    seeds; it is dropped (NaN) so that the seeds of one setting average into one row.
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
    return (df.groupby(keys, dropna=False, as_index=False)
              [["final_acc", "acc_at_half", "bytes_per_iteration",
                "bsp_bytes_per_iteration"]].mean())


def experiment_frames(study: StudyConfig, rows: dict[str, dict]) -> dict[str, pd.DataFrame]:
    """Each experiment's :func:`runs_frame`, by name; experiments without finished runs left out.

    Computed once per study and shared by the claims and the figures.
    """
    frames = {exp.name: runs_frame(study, exp, rows) for exp in study.experiments}
    return {name: df for name, df in frames.items() if not df.empty}


def loss_table(df: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (%) per model x algorithm x fraction, and the loss vs the IID (0%) run."""
    fixed = df[df["mode"] == "fixed"]
    piv = fixed.pivot_table(index=["model", "algorithm"], columns="noniid_fraction",
                            values="final_acc") * 100
    if 0.0 in piv.columns:
        for col in [c for c in piv.columns if c != 0.0]:
            piv[f"loss@{int(round(col * 100))}%"] = piv[0.0] - piv[col]
    piv.columns = [f"acc@{int(round(c * 100))}%" if isinstance(c, float) else c
                   for c in piv.columns]
    return piv.round(1)


def _loss(table: pd.DataFrame, model: str, algo: str, frac: float) -> float | None:
    col = f"loss@{int(round(frac * 100))}%"
    if (model, algo) not in table.index or col not in table.columns:
        return None
    return float(table.loc[(model, algo), col])


def claims_noniid(table: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    frac = max(exp.noniid_fractions)
    out = []
    for model in exp.models:
        losses = {a: _loss(table, model, a, frac) for a in exp.algorithms}
        dec = {a: v for a, v in losses.items() if a in DECENTRALIZED and v is not None}
        ev = ", ".join(f"{a} {v:+.1f}" for a, v in losses.items() if v is not None)
        if dec:
            out.append(Claim("F1", f"{model}: every decentralized algorithm loses > {sig:.1f} "
                             "points under label skew", all(v > sig for v in dec.values()), ev))
        if losses.get("bsp") is not None:
            out.append(Claim("F1", f"{model}: BSP loses <= {sig:.1f} points",
                             losses["bsp"] <= sig, f"bsp {losses['bsp']:+.1f}"))
    return out


def claims_norm(table: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    frac = max(exp.noniid_fractions)
    bn = [m for m in exp.models if "bn" in m]
    gn = [m for m in exp.models if "gn" in m]
    out = []
    for b, g in zip(bn, gn, strict=False):
        lb, lg = _loss(table, b, "bsp", frac), _loss(table, g, "bsp", frac)
        if lb is not None:
            out.append(Claim("F2", f"BSP with BatchNorm ({b}) loses > {sig:.1f} points",
                             lb > sig, f"{lb:+.1f}"))
        if lg is not None:
            out.append(Claim("F2", f"GroupNorm ({g}) recovers BSP's accuracy (loss <= "
                             f"{sig:.1f})", lg <= sig, f"{lg:+.1f}"))
        dec_b = [_loss(table, b, a, frac) for a in exp.algorithms if a in DECENTRALIZED]
        dec_g = [_loss(table, g, a, frac) for a in exp.algorithms if a in DECENTRALIZED]
        pairs = [(x, y) for x, y in zip(dec_b, dec_g, strict=True)
                 if x is not None and y is not None]
        if pairs:
            mb = sum(x for x, _ in pairs) / len(pairs)
            mg = sum(y for _, y in pairs) / len(pairs)
            out.append(Claim("F2", "GroupNorm reduces the decentralized algorithms' mean loss",
                             mg < mb, f"BN {mb:+.1f} vs GN {mg:+.1f}"))
    return out


def claims_skew_degree(table: pd.DataFrame, exp: Experiment,
                       sig: float) -> list[Claim]:  # noqa: ARG001  (same signature as the others)
    fracs = sorted(f for f in exp.noniid_fractions if f > 0)
    out = []
    for model in exp.models:
        mean_loss = []
        for f in fracs:
            vals = [_loss(table, model, a, f) for a in exp.algorithms if a in DECENTRALIZED]
            vals = [v for v in vals if v is not None]
            if vals:
                mean_loss.append((f, sum(vals) / len(vals)))
        if len(mean_loss) < 2:
            continue
        rho = _spearman(mean_loss)
        ev = ", ".join(f"{int(f * 100)}%: {v:+.1f}" for f, v in mean_loss)
        out.append(Claim("F3", f"{model}: the decentralized algorithms' mean loss grows with the "
                         "degree of skew (Spearman >= 0.8)", rho >= 0.8, f"rho {rho:.2f}; {ev}"))
    return out


def _spearman(points: Sequence[tuple[float, float]]) -> float:
    """Spearman's rank correlation of ``(x, y)`` points (the F3 trends)."""
    xs, ys = zip(*points, strict=True)
    return float(pd.Series(xs).corr(pd.Series(ys), method="spearman"))


def partitions_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x algorithm: the IID and most-skewed accuracy (%) and the loss at each number
    of partitions (columns ``N=n IID``, ``N=n non-IID``, ``N=n loss``)."""
    fixed = df[df["mode"] == "fixed"]
    skewed = fixed["noniid_fraction"].max()
    out = {}
    for n, part in fixed.groupby("num_partitions"):
        piv = part.pivot_table(index=["model", "algorithm"], columns="noniid_fraction",
                               values="final_acc") * 100
        if 0.0 in piv.columns and skewed in piv.columns and skewed > 0:  # else no skewed runs
            out[f"N={n} IID"], out[f"N={n} non-IID"] = piv[0.0], piv[skewed]
            out[f"N={n} loss"] = piv[0.0] - piv[skewed]
    return pd.DataFrame(out).round(1)


def claims_partitions(table: pd.DataFrame, exp: Experiment, sig: float) -> list[Claim]:
    """Finding 3's second half: more partitions are worse (the mean decentralized loss grows
    with N), and BSP stays within ``sig`` at every N."""
    ns = sorted({int(c.split()[0][2:]) for c in table.columns if c.endswith("loss")})
    out = []
    for model in exp.models:
        losses = [f"N={n} loss" for n in ns]
        # only algorithms measured at every N, so that a failed run cannot bend the trend
        dec = [(model, a) for a in exp.algorithms if a in DECENTRALIZED
               and (model, a) in table.index and table.loc[(model, a), losses].notna().all()]
        mean = [(n, float(table.loc[dec, f"N={n} loss"].mean())) for n in ns if dec]
        if len(mean) >= 2:
            rho = _spearman(mean)
            ev = ", ".join(f"N={n}: {v:+.1f}" for n, v in mean)
            out.append(Claim("F3", f"{model}: the decentralized algorithms' mean loss grows with "
                             "the number of partitions (Spearman >= 0.8)", rho >= 0.8,
                             f"rho {rho:.2f}; {ev}"))
        bsp = table.loc[(model, "bsp"), losses].dropna() if (model, "bsp") in table.index else []
        if len(bsp):
            worst = float(bsp.max())
            out.append(Claim("F3", f"{model}: BSP loses <= {sig:.1f} points at every number of "
                             "partitions", worst <= sig, f"worst {worst:+.1f}"))
    return out


def oracle_of(grid: pd.DataFrame, baseline_acc: float, target: float) -> OracleChoice:
    """The Oracle among an algorithm's fixed-knob rows of :func:`runs_frame`."""
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


def skewscout_table(df: pd.DataFrame, exp: Experiment, target: float) -> pd.DataFrame:
    """Per model x algorithm x fraction: BSP, Oracle and SkewScout accuracy and communication."""
    recs = []
    for model, frac, part, b_acc, b_bytes in bsp_groups(df):
        for algo in exp.algorithms:
            grid = part[(part["algorithm"] == algo) & (part["mode"] == "fixed")]
            scout = part[(part["algorithm"] == algo) & (part["mode"] == "skewscout")]
            if grid.empty or scout.empty:
                continue
            oracle = oracle_of(grid, b_acc, target)
            o_half = float(grid.loc[grid["knob"] == oracle.knob, "acc_at_half"].iloc[0])
            s_acc = float(scout["final_acc"].iloc[0])
            s_bytes = float(scout["bytes_per_iteration"].iloc[0])
            recs.append({
                "model": model, "noniid": f"{int(round(frac * 100))}%", "algorithm": algo,
                "bsp_acc": 100 * b_acc, "oracle_knob": oracle.knob, "oracle_ok": oracle.feasible,
                "oracle_acc": 100 * oracle.final_acc, "oracle_acc_at_half": 100 * o_half,
                "skewscout_acc": 100 * s_acc,
                "skewscout_acc_at_half": 100 * float(scout["acc_at_half"].iloc[0]),
                "skewscout_ok": meets_target(s_acc, b_acc, target),
                "saving_vs_bsp": b_bytes / max(s_bytes, 1e-12),
                "oracle_saving_vs_bsp": b_bytes / max(oracle.bytes_per_iteration, 1e-12),
                "vs_oracle": s_bytes / max(oracle.bytes_per_iteration, 1e-12),
            })
    return pd.DataFrame(recs).round(2)


def claims_skewscout(table: pd.DataFrame) -> list[Claim]:
    out = []
    for r in table.itertuples():
        tag = f"{r.model} {r.noniid} {r.algorithm}"
        ev = (f"acc {r.skewscout_acc:.1f} vs BSP {r.bsp_acc:.1f}, {r.saving_vs_bsp:.1f}x less than "
              f"BSP, {r.vs_oracle:.2f}x the Oracle (knob {r.oracle_knob:g})")
        out.append(Claim("F4", f"{tag}: SkewScout stays within the target of BSP's accuracy",
                         bool(r.skewscout_ok), ev))
        out.append(Claim("F4", f"{tag}: SkewScout sends less than BSP",
                         r.saving_vs_bsp > 1.0, f"{r.saving_vs_bsp:.1f}x"))
        out.append(Claim("F4", f"{tag}: SkewScout within 1.5x the Oracle (paper)",
                         bool(r.skewscout_ok) and r.vs_oracle <= 1.5, f"{r.vs_oracle:.2f}x"))
        out.append(Claim("F4", f"{tag}: SkewScout within 1.2x the Oracle (our goal)",
                         bool(r.skewscout_ok) and r.vs_oracle <= 1.2, f"{r.vs_oracle:.2f}x"))
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
    for exp in study.experiments:
        df = frames.get(exp.name)
        if df is None or df.empty:
            continue
        if exp.kind == "skewscout":
            tables[exp.name] = t = skewscout_table(df, exp, study.target)
            claims += claims_skewscout(t) if not t.empty else []
            continue
        if exp.kind == "partitions":
            tables[exp.name] = t = partitions_table(df)
            claims += claims_partitions(t, exp, sig)
            continue
        tables[exp.name] = t = loss_table(df)
        rule = {"noniid": claims_noniid, "norm": claims_norm, "skew_degree": claims_skew_degree}
        claims += rule[exp.kind](t, exp, sig)
    return claims, tables


def summary_markdown(study: StudyConfig, claims: Sequence[Claim], tables: dict) -> str:
    parts = [f"# Study `{study.name}`\n",
             f"Dataset {study.dataset.name}, {study.num_partitions} partitions, "
             f"target accuracy loss {100 * study.target:.1f} points.\n"]
    for exp in study.experiments:
        if exp.name in tables and not tables[exp.name].empty:
            parts.append(f"## {exp.name} ({exp.kind})\n\n{markdown_table(tables[exp.name])}\n")
    parts.append("## Findings\n")
    parts += [c.line() for c in claims]
    return "\n".join(parts) + "\n"


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub markdown table (pandas' to_markdown needs tabulate, which we avoid)."""
    flat = df.reset_index() if df.index.name or df.index.nlevels > 1 else df
    head = [str(c) for c in flat.columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in flat.itertuples(index=False):
        cells = [f"{v:g}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
