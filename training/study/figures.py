"""The study's figures (docs/reference.md §5), drawn from the results rows with matplotlib (Agg).

One figure per experiment kind, every point a mean over the study's seeds with its sd (error bars,
a band on the curves; none for one seed): accuracy vs iteration and the IID/non-IID loss bars
(finding 1),
BN vs GN bars (finding 2), accuracy vs degree of skew (finding 3), and communication vs accuracy
with the grid, the Oracle, SkewScout and BSP (finding 4; one panel per model x non-IID fraction,
each against its own BSP). Every function returns the file it wrote; an experiment without
finished runs draws nothing. The per-experiment frames come from
:func:`training.study.findings.experiment_frames`, shared with the claims.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from training.study import baselines  # noqa: E402
from training.study.config import KNOB_OF, Experiment, StudyConfig  # noqa: E402
from training.study.findings import (  # noqa: E402
    BspGroup,
    accuracy,
    bsp_groups,
    experiment_frames,
    experiment_rows,
    oracle_of,
    partitions_table,
)
from training.study.spread import Spread  # noqa: E402

MAX_PANEL_COLUMNS = 3    # wider studies wrap into rows of panels
# the paper's four, then the later ones alphabetically (algorithm_order draws any other after)
COLORS = {"bsp": "black", "gaia": "tab:blue", "fedavg": "tab:orange", "dgc": "tab:green",
          "ef_topk": "tab:olive", "fedbn": "tab:red", "fedopt": "tab:brown",
          "fedprox": "tab:purple", "scaffold": "tab:pink"}
VARIANT_MARKERS = ("o", "s", "^", "D", "v", "P")


# A figure's title says what it shows, in words (the experiment's name is in its file name).
TITLES = {"noniid": "Accuracy loss under label skew", "norm": "BatchNorm vs GroupNorm under skew",
          "skew_degree": "Accuracy vs degree of skew",
          "partitions": "Accuracy loss vs number of partitions",
          "skewscout": "SkewScout vs the Oracle's grid: communication and accuracy",
          "baselines": "Baselines under skew: accuracy vs communication"}


def title_of(exp: Experiment) -> str:
    return TITLES.get(exp.kind, exp.name)


def plot_curves(study: StudyConfig, exp: Experiment, rows: dict, out: Path) -> Path | None:
    """Accuracy vs iteration, the seeds' mean with a ± sd band, IID and most skewed."""
    recs = [r for r in experiment_rows(study, exp, rows) if r["curve"]]
    if not recs:
        return None
    fig, axes = plt.subplots(1, len(exp.models), figsize=(5 * len(exp.models), 3.6),
                             squeeze=False)
    lo, hi = min(exp.noniid_fractions), max(exp.noniid_fractions)
    curves = pd.DataFrame([(r["model"], r["algorithm"], r["noniid_fraction"], r["seed"], i, a)
                           for r in recs for i, a in r["curve"]],
                          columns=["model", "algorithm", "frac", "seed", "it", "acc"])
    for ax, model in zip(axes[0], exp.models, strict=True):
        mine = curves[(curves["model"] == model) & curves["frac"].isin([lo, hi])]
        for (algo, frac), part in mine.groupby(["algorithm", "frac"], sort=False):
            stats = part.groupby("it")["acc"].agg(["mean", "std"]).fillna(0.0) * 100
            style, c = ("-" if frac == lo else "--"), COLORS.get(algo)
            ax.plot(stats.index, stats["mean"], style, color=c,
                    label=f"{algo} {int(100 * frac)}% non-IID")
            ax.fill_between(stats.index, stats["mean"] - stats["std"],
                            stats["mean"] + stats["std"], color=c, alpha=0.15, lw=0)
        ax.set(title=f"Accuracy during training ({model})", xlabel="iteration",
               ylabel="validation accuracy (%)")
        ax.legend(fontsize=7)
    return _save(fig, out / f"{exp.name}_curves.png")


def algorithm_order(names: Iterable[str]) -> list[str]:
    """The algorithms to draw: those with a colour of their own in :data:`COLORS` order, then
    every other one (an algorithm registered later), sorted."""
    names = set(names)
    return [a for a in COLORS if a in names] + sorted(names - set(COLORS))


def plot_loss_bars(study: StudyConfig, exp: Experiment, df: pd.DataFrame,
                   out: Path) -> Path | None:
    """Accuracy loss (IID minus most-skewed) per algorithm, one bar group per model.

    ``df``: the experiment's :func:`~training.study.findings.runs_frame`.
    """
    if df.empty:
        return None
    lo, hi = min(exp.noniid_fractions), max(exp.noniid_fractions)
    cells = {(m, a): _lo_hi_loss(df, m, a, lo, hi) for m in exp.models
             for a in sorted(set(df["algorithm"]))}
    cells = {k: v for k, v in cells.items() if v is not None}
    if not cells:
        return None
    means = pd.Series({k: v.mean for k, v in cells.items()}).unstack(0)
    sds = pd.Series({k: v.sd for k, v in cells.items()}).unstack(0).fillna(0.0)
    order = algorithm_order(means.index)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    means.loc[order].plot.bar(ax=ax, rot=0, yerr=sds.loc[order], capsize=3)
    for bars in ax.containers:      # every bar labelled, so a zero loss (BSP) is seen too
        if hasattr(bars, "patches"):
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.axhline(100 * study.target, color="grey", lw=0.8, ls=":", label="target")
    ax.set(ylabel=f"accuracy loss, {int(100 * lo)}% -> {int(100 * hi)}% non-IID (points)",
           xlabel="", title=title_of(exp))
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_loss_bars.png")


def _lo_hi_loss(df: pd.DataFrame, model: str, algo: str, lo: float, hi: float) -> Spread | None:
    """Accuracy at ``lo`` minus at ``hi`` (points), seed by seed."""
    a, b = accuracy(df, model, algo, lo), accuracy(df, model, algo, hi)
    if a is None or b is None or not (a - b).n:
        return None
    return a - b


def plot_skew_degree(exp: Experiment, df: pd.DataFrame, out: Path) -> Path | None:
    """Final accuracy (mean ± sd over seeds) vs the non-IID fraction; ``df`` is the
    experiment's ``runs_frame``."""
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (model, algo), part in df.groupby(["model", "algorithm"]):
        part = part.sort_values("noniid_fraction")
        ax.errorbar(100 * part["noniid_fraction"], 100 * part["final_acc"],
                    yerr=100 * part["final_acc_sd"].fillna(0.0), fmt="o-", capsize=3,
                    color=COLORS.get(algo), label=f"{algo} ({model})")
    ax.set(xlabel="degree of skew (% non-IID)", ylabel="final accuracy (%)",
           title=title_of(exp))
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_accuracy_vs_skew.png")


def plot_partitions(exp: Experiment, df: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy loss (IID minus most skewed) vs the number of partitions, per algorithm."""
    table = partitions_table(df) if not df.empty else pd.DataFrame()
    cols = [c for c in table.columns if c.endswith(" loss")]
    if len(cols) < 2:
        return None
    ns = [int(c.split()[0][2:]) for c in cols]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    styles = dict(zip(table.index.get_level_values(0).unique(), ("-", "--", ":", "-."),
                      strict=False))       # one line style per model, one colour per algorithm
    for (model, algo), row in table.iterrows():
        ax.errorbar(ns, [row[c] for c in cols], yerr=[_zero_nan(row[f"{c} sd"]) for c in cols],
                    marker="o", ls=styles.get(model, "-"), capsize=3, color=COLORS.get(algo),
                    label=f"{algo} ({model})")
    ax.set_xticks(ns)
    ax.set(xlabel="number of partitions", ylabel="accuracy loss under skew (points)",
           title=title_of(exp))
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_loss_vs_partitions.png")


def comm_points(df: pd.DataFrame, exp: Experiment, target: float) -> pd.DataFrame:
    """The points of the communication-vs-accuracy figure, each against its own BSP.

    One row per point: ``model``, ``noniid_fraction``, ``algorithm``, ``series`` ("bsp", "grid",
    "oracle" or "skewscout"), ``comm_vs_bsp`` (bytes/iteration over the BSP run's), ``final_acc``,
    ``final_acc_sd`` (over seeds; 0 for one) and ``bsp_acc`` (fractions; seeds' means). BSP is
    the run of the same model and non-IID fraction (:func:`~training.study.findings.bsp_groups`,
    as in the SkewScout table).
    """
    recs = [(g.model, g.noniid_fraction, *point, g.bsp_acc)
            for g in bsp_groups(df) for point in _group_points(g, exp, target)]
    return pd.DataFrame(recs, columns=["model", "noniid_fraction", "algorithm", "series",
                                       "comm_vs_bsp", "final_acc", "final_acc_sd", "bsp_acc"])


def _group_points(g: BspGroup, exp: Experiment,
                  target: float) -> list[tuple[str, str, float, float, float]]:
    """``(algorithm, series, comm_vs_bsp, final_acc, final_acc_sd)`` of one BSP group, in
    drawing order."""
    bsp = g.part[g.part["algorithm"] == "bsp"]
    points = [("bsp", "bsp", 1.0, g.bsp_acc, _zero_nan(bsp["final_acc_sd"].iloc[0]))]
    for algo in exp.algorithms:
        mine = g.part[g.part["algorithm"] == algo]
        grid, scout = mine[mine["mode"] == "fixed"], mine[mine["mode"] == "skewscout"]
        points += [(algo, "grid", r.bytes_per_iteration / g.bsp_bytes, r.final_acc,
                    _zero_nan(r.final_acc_sd)) for r in grid.itertuples()]
        if not grid.empty:
            o = oracle_of(grid, g.bsp_acc, target)
            sd = grid.loc[grid["knob"] == o.knob, "final_acc_sd"].iloc[0]
            points.append((algo, "oracle", o.bytes_per_iteration / g.bsp_bytes, o.final_acc,
                           _zero_nan(sd)))
        points += [(algo, "skewscout", r.bytes_per_iteration / g.bsp_bytes, r.final_acc,
                    _zero_nan(r.final_acc_sd)) for r in scout.itertuples()]
    return points


def _zero_nan(value: float) -> float:
    """An sd for an error bar: none (one seed) draws no bar."""
    return 0.0 if math.isnan(value) else float(value)


def plot_comm_vs_accuracy(study: StudyConfig, exp: Experiment, df: pd.DataFrame,
                          out: Path) -> Path | None:
    """Grid, Oracle, SkewScout and BSP: one panel per model x non-IID fraction."""
    points = comm_points(df, exp, study.target)
    if points.empty:   # checked before the figure exists, so none is left open
        return None
    panels = list(points.groupby(["model", "noniid_fraction"], sort=False))
    cols = min(len(panels), MAX_PANEL_COLUMNS)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(7.5 * cols, 5.2 * rows), squeeze=False)
    for ax, ((model, frac), pts) in zip(axes.flat, panels, strict=False):
        _comm_panel(ax, exp, pts, study.target, f"{title_of(exp)}\n{model}, "
                    f"{100 * frac:g}% non-IID")
    for ax in list(axes.flat)[len(panels):]:    # the last row's empty cells
        ax.set_axis_off()
    return _save(fig, out / f"{exp.name}_comm_vs_accuracy.png")


def _comm_panel(ax: plt.Axes, exp: Experiment, pts: pd.DataFrame, target: float,
                title: str) -> None:
    b_acc = float(pts["bsp_acc"].iloc[0])
    bsp = pts[pts["series"] == "bsp"]
    ax.errorbar([1.0], [100 * b_acc], yerr=100 * bsp["final_acc_sd"], fmt="s", color="black",
                ms=8, capsize=3, label="BSP")
    for algo in exp.algorithms:
        mine = pts[pts["algorithm"] == algo]
        grid, scout = mine[mine["series"] == "grid"], mine[mine["series"] == "skewscout"]
        oracle = mine[mine["series"] == "oracle"]
        c = COLORS.get(algo)
        ax.errorbar(grid["comm_vs_bsp"], 100 * grid["final_acc"],
                    yerr=100 * grid["final_acc_sd"], fmt=".:", color=c, alpha=0.6, capsize=2,
                    label=f"{algo} grid")
        if not oracle.empty:
            ax.scatter(oracle["comm_vs_bsp"].tolist(), (100 * oracle["final_acc"]).tolist(),
                       marker="D", facecolors="none", edgecolors=c, s=80, label=f"{algo} Oracle")
        if not scout.empty:
            ax.errorbar(scout["comm_vs_bsp"], 100 * scout["final_acc"],
                        yerr=100 * scout["final_acc_sd"], fmt="*", color=c, ms=13, capsize=3,
                        label=f"{algo} SkewScout")
    ax.axhline(100 * (b_acc - target), color="grey", lw=0.8, ls=":", label="BSP - target")
    ax.set_xscale("log")
    ax.set(xlabel="communication relative to BSP (bytes/iteration)",
           ylabel="final accuracy (%)", title=title)
    # the legend below the axes, so crowded points (grid, Oracle, SkewScout) stay readable
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.16))


def plot_baselines(exp: Experiment, base: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy vs bytes (% of BSP's) of the experiment's settings under each skewed
    partitioning (one panel each; colour: algorithm, marker: variant), mean ± sd."""
    mine = base[(base["experiment"] == exp.name) & (base["partitioning"] != baselines.IID)]
    if mine.empty:
        return None
    panels = sorted(mine["partitioning"].unique())
    markers = dict(zip(sorted(mine["variant"].unique()), VARIANT_MARKERS * 4, strict=False))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.4), squeeze=False)
    for ax, p in zip(axes[0], panels, strict=True):
        for variant, algo, knob, _ in baselines.settings(mine[mine["partitioning"] == p]):
            acc = baselines.cell(base, variant, algo, p, knob)
            traffic = baselines.cell(base, variant, algo, p, knob, "bytes_pct")
            if acc is None or traffic is None:
                continue
            ax.errorbar([traffic.mean], [acc.mean], yerr=[_zero_nan(acc.sd)], capsize=3,
                        marker=markers[variant], color=COLORS.get(algo), ls="none",
                        label=f"{variant} {baselines.setting_label(algo, knob)}")
        ax.set_xscale("log")
        ax.set(xlabel="bytes per iteration (% of BSP's)", ylabel="final accuracy (%)",
               title=f"{title_of(exp)}\n{p}")
        ax.legend(fontsize=6, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.16))
    return _save(fig, out / f"{exp.name}_accuracy_vs_bytes.png")


def plot_sweep(exp: Experiment, base: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy vs each swept knob (mean ± sd), one line per variant and skewed partitioning."""
    mine = base[(base["experiment"] == exp.name) & base["algorithm"].isin(list(exp.sweep))]
    if mine.empty:
        return None
    algos = sorted(mine["algorithm"].unique())
    fig, axes = plt.subplots(1, len(algos), figsize=(6 * len(algos), 3.8), squeeze=False)
    for ax, algo in zip(axes[0], algos, strict=True):
        here = mine[mine["algorithm"] == algo]
        for (variant, p), part in here.groupby(["variant", "partitioning"]):
            stats = part.drop_duplicates("run_id").groupby("knob")["acc"].agg(["mean", "std"])
            ax.errorbar(stats.index, stats["mean"], yerr=stats["std"].fillna(0.0), marker="o",
                        capsize=3, label=f"{variant}, {p}")
        ax.set_xscale("log")
        ax.set(xlabel=f"{KNOB_OF[algo]} (log)", ylabel="final accuracy (%)",
               title=f"{algo}: accuracy vs {KNOB_OF[algo]}")
        ax.legend(fontsize=7)
    return _save(fig, out / f"{exp.name}_sweep.png")


def draw_all(study: StudyConfig, rows: dict, out_dir: str | Path,
             frames: Mapping[str, pd.DataFrame] | None = None) -> list[Path]:
    """Every figure of the study into ``out_dir`` (created).

    ``frames``: :func:`~training.study.findings.experiment_frames` of ``rows`` when the caller has
    them already (the study runner computes them once for the claims and the figures).
    """
    frames = experiment_frames(study, rows) if frames is None else frames
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path | None] = []
    base = baselines.baselines_frame(study, rows)
    for exp in study.experiments:
        df = frames.get(exp.name, pd.DataFrame())
        if exp.kind == "baselines":
            if not base.empty:
                made.append(plot_sweep(exp, base, out) if exp.sweep
                            else plot_baselines(exp, base, out))
        elif exp.kind == "noniid":
            made += [plot_curves(study, exp, rows, out), plot_loss_bars(study, exp, df, out)]
        elif exp.kind == "norm":
            made.append(plot_loss_bars(study, exp, df, out))
        elif exp.kind == "skew_degree":
            made.append(plot_skew_degree(exp, df, out))
        elif exp.kind == "partitions":
            made.append(plot_partitions(exp, df, out))
        else:
            made.append(plot_comm_vs_accuracy(study, exp, df, out))
    return [p for p in made if p is not None]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
