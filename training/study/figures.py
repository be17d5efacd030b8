"""The study's figures (docs/reference.md §5), drawn from the results rows with matplotlib (Agg).

One figure per experiment kind: accuracy vs iteration and the IID/non-IID loss bars (finding 1),
BN vs GN bars (finding 2), accuracy vs degree of skew (finding 3), and communication vs accuracy
with the grid, the Oracle, SkewScout and BSP (finding 4; one panel per model x non-IID fraction,
each against its own BSP). Every function returns the file it wrote; an experiment without
finished runs draws nothing. The per-experiment frames come from
:func:`training.study.findings.experiment_frames`, shared with the claims.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from training.study.config import Experiment, StudyConfig  # noqa: E402
from training.study.findings import (  # noqa: E402
    BspGroup,
    bsp_groups,
    experiment_frames,
    experiment_rows,
    oracle_of,
    partitions_table,
)

MAX_PANEL_COLUMNS = 3    # wider studies wrap into rows of panels
COLORS = {"bsp": "black", "gaia": "tab:blue", "fedavg": "tab:orange", "dgc": "tab:green"}


def plot_curves(study: StudyConfig, exp: Experiment, rows: dict, out: Path) -> Path | None:
    recs = [r for r in experiment_rows(study, exp, rows) if r["seed"] == study.seeds[0]]
    if not recs:
        return None
    fig, axes = plt.subplots(1, len(exp.models), figsize=(5 * len(exp.models), 3.6),
                             squeeze=False)
    lo, hi = min(exp.noniid_fractions), max(exp.noniid_fractions)
    for ax, model in zip(axes[0], exp.models, strict=True):
        for r in recs:
            if r["model"] != model or r["noniid_fraction"] not in (lo, hi):
                continue
            it, acc = zip(*r["curve"], strict=True) if r["curve"] else ((), ())
            style = "-" if r["noniid_fraction"] == lo else "--"
            ax.plot(it, [100 * a for a in acc], style, color=COLORS.get(r["algorithm"]),
                    label=f"{r['algorithm']} {int(100 * r['noniid_fraction'])}% non-IID")
        ax.set(title=model, xlabel="iteration", ylabel="validation accuracy (%)")
        ax.legend(fontsize=7)
    return _save(fig, out / f"{exp.name}_curves.png")


def plot_loss_bars(study: StudyConfig, exp: Experiment, df: pd.DataFrame,
                   out: Path) -> Path | None:
    """Accuracy loss (IID minus most-skewed) per algorithm, one bar group per model.

    ``df``: the experiment's :func:`~training.study.findings.runs_frame`.
    """
    if df.empty:
        return None
    lo, hi = min(exp.noniid_fractions), max(exp.noniid_fractions)
    piv = df.pivot_table(index="algorithm", columns=["model", "noniid_fraction"],
                         values="final_acc")
    losses = pd.DataFrame({m: 100 * (piv[(m, lo)] - piv[(m, hi)]) for m in exp.models
                           if (m, lo) in piv.columns and (m, hi) in piv.columns})
    if losses.empty:
        return None
    order = [a for a in COLORS if a in losses.index]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    losses.loc[order].plot.bar(ax=ax, rot=0)
    ax.axhline(100 * study.target, color="grey", lw=0.8, ls=":", label="target")
    ax.set(ylabel=f"accuracy loss, {int(100 * lo)}% -> {int(100 * hi)}% non-IID (points)",
           xlabel="", title=exp.name)
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_loss_bars.png")


def plot_skew_degree(exp: Experiment, df: pd.DataFrame, out: Path) -> Path | None:
    """Final accuracy vs the non-IID fraction; ``df`` is the experiment's ``runs_frame``."""
    if df.empty:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for (model, algo), part in df.groupby(["model", "algorithm"]):
        part = part.sort_values("noniid_fraction")
        ax.plot(100 * part["noniid_fraction"], 100 * part["final_acc"], "o-",
                color=COLORS.get(algo), label=f"{algo} ({model})")
    ax.set(xlabel="degree of skew (% non-IID)", ylabel="final accuracy (%)", title=exp.name)
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_accuracy_vs_skew.png")


def plot_partitions(exp: Experiment, df: pd.DataFrame, out: Path) -> Path | None:
    """Accuracy loss (IID minus most skewed) vs the number of partitions, per algorithm."""
    table = partitions_table(df) if not df.empty else pd.DataFrame()
    cols = [c for c in table.columns if c.endswith("loss")]
    if len(cols) < 2:
        return None
    ns = [int(c.split()[0][2:]) for c in cols]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    styles = dict(zip(table.index.get_level_values(0).unique(), ("-", "--", ":", "-."),
                      strict=False))       # one line style per model, one colour per algorithm
    for (model, algo), row in table.iterrows():
        ax.plot(ns, [row[c] for c in cols], marker="o", ls=styles.get(model, "-"),
                color=COLORS.get(algo), label=f"{algo} ({model})")
    ax.set_xticks(ns)
    ax.set(xlabel="number of partitions", ylabel="accuracy loss under skew (points)",
           title=exp.name)
    ax.legend(fontsize=8)
    return _save(fig, out / f"{exp.name}_loss_vs_partitions.png")


def comm_points(df: pd.DataFrame, exp: Experiment, target: float) -> pd.DataFrame:
    """The points of the communication-vs-accuracy figure, each against its own BSP.

    One row per point: ``model``, ``noniid_fraction``, ``algorithm``, ``series`` ("bsp", "grid",
    "oracle" or "skewscout"), ``comm_vs_bsp`` (bytes/iteration over the BSP run's), ``final_acc``
    and ``bsp_acc`` (fractions). BSP is the run of the same model and non-IID fraction
    (:func:`~training.study.findings.bsp_groups`, as in the SkewScout table).
    """
    recs = [(g.model, g.noniid_fraction, *point, g.bsp_acc)
            for g in bsp_groups(df) for point in _group_points(g, exp, target)]
    return pd.DataFrame(recs, columns=["model", "noniid_fraction", "algorithm", "series",
                                       "comm_vs_bsp", "final_acc", "bsp_acc"])


def _group_points(g: BspGroup, exp: Experiment,
                  target: float) -> list[tuple[str, str, float, float]]:
    """``(algorithm, series, comm_vs_bsp, final_acc)`` of one BSP group, in drawing order."""
    points = [("bsp", "bsp", 1.0, g.bsp_acc)]
    for algo in exp.algorithms:
        mine = g.part[g.part["algorithm"] == algo]
        grid, scout = mine[mine["mode"] == "fixed"], mine[mine["mode"] == "skewscout"]
        points += [(algo, "grid", r.bytes_per_iteration / g.bsp_bytes, r.final_acc)
                   for r in grid.itertuples()]
        if not grid.empty:
            o = oracle_of(grid, g.bsp_acc, target)
            points.append((algo, "oracle", o.bytes_per_iteration / g.bsp_bytes, o.final_acc))
        points += [(algo, "skewscout", r.bytes_per_iteration / g.bsp_bytes, r.final_acc)
                   for r in scout.itertuples()]
    return points


def plot_comm_vs_accuracy(study: StudyConfig, exp: Experiment, df: pd.DataFrame,
                          out: Path) -> Path | None:
    """Grid, Oracle, SkewScout and BSP: one panel per model x non-IID fraction."""
    points = comm_points(df, exp, study.target)
    if points.empty:   # checked before the figure exists, so none is left open
        return None
    panels = list(points.groupby(["model", "noniid_fraction"], sort=False))
    cols = min(len(panels), MAX_PANEL_COLUMNS)
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4 * rows), squeeze=False)
    for ax, ((model, frac), pts) in zip(axes.flat, panels, strict=False):
        title = exp.name if len(panels) == 1 else f"{exp.name}: {model}, {100 * frac:g}% non-IID"
        _comm_panel(ax, exp, pts, study.target, title)
    for ax in list(axes.flat)[len(panels):]:    # the last row's empty cells
        ax.set_axis_off()
    return _save(fig, out / f"{exp.name}_comm_vs_accuracy.png")


def _comm_panel(ax: plt.Axes, exp: Experiment, pts: pd.DataFrame, target: float,
                title: str) -> None:
    b_acc = float(pts["bsp_acc"].iloc[0])
    ax.scatter([1.0], [100 * b_acc], marker="s", color="black", s=60, label="BSP")
    for algo in exp.algorithms:
        mine = pts[pts["algorithm"] == algo]
        grid, scout = mine[mine["series"] == "grid"], mine[mine["series"] == "skewscout"]
        oracle = mine[mine["series"] == "oracle"]
        c = COLORS.get(algo)
        ax.plot(grid["comm_vs_bsp"], 100 * grid["final_acc"], ".:", color=c, alpha=0.6,
                label=f"{algo} grid")
        if not oracle.empty:
            ax.scatter(oracle["comm_vs_bsp"].tolist(), (100 * oracle["final_acc"]).tolist(),
                       marker="D", facecolors="none", edgecolors=c, s=80, label=f"{algo} Oracle")
        if not scout.empty:
            ax.scatter(scout["comm_vs_bsp"], 100 * scout["final_acc"], marker="*", color=c,
                       s=160, label=f"{algo} SkewScout")
    ax.axhline(100 * (b_acc - target), color="grey", lw=0.8, ls=":", label="BSP - target")
    ax.set_xscale("log")
    ax.set(xlabel="communication relative to BSP (bytes/iteration)",
           ylabel="final accuracy (%)", title=title)
    ax.legend(fontsize=7, ncol=2)


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
    for exp in study.experiments:
        df = frames.get(exp.name, pd.DataFrame())
        if exp.kind == "noniid":
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
