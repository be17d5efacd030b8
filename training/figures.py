"""The study's figures (REFERENCE.md §5), drawn from the results rows with matplotlib (Agg).

One figure per experiment kind: accuracy vs iteration and the IID/non-IID loss bars (finding 1),
BN vs GN bars (finding 2), accuracy vs degree of skew (finding 3), and communication vs accuracy
with the grid, the Oracle, SkewScout and BSP (finding 4). Every function returns the file it
wrote; an experiment without finished runs draws nothing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from training.findings import experiment_rows, oracle_of, runs_frame  # noqa: E402
from training.study_config import Experiment, StudyConfig  # noqa: E402

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


def plot_loss_bars(study: StudyConfig, exp: Experiment, rows: dict, out: Path) -> Path | None:
    """Accuracy loss (IID minus most-skewed) per algorithm, one bar group per model."""
    df = runs_frame(study, exp, rows)
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


def plot_skew_degree(study: StudyConfig, exp: Experiment, rows: dict, out: Path) -> Path | None:
    df = runs_frame(study, exp, rows)
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


def plot_comm_vs_accuracy(study: StudyConfig, exp: Experiment, rows: dict,
                          out: Path) -> Path | None:
    df = runs_frame(study, exp, rows)
    if df.empty:
        return None
    bsp = df[df["algorithm"] == "bsp"]
    if bsp.empty:      # checked before the figure exists, so none is left open
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    b_acc, b_bytes = float(bsp["final_acc"].iloc[0]), float(bsp["bytes_per_iteration"].iloc[0])
    ax.scatter([1.0], [100 * b_acc], marker="s", color="black", s=60, label="BSP")
    for algo in exp.algorithms:
        grid = df[(df["algorithm"] == algo) & (df["mode"] == "fixed")]
        scout = df[(df["algorithm"] == algo) & (df["mode"] == "skewscout")]
        c = COLORS.get(algo)
        ax.plot(grid["bytes_per_iteration"] / b_bytes, 100 * grid["final_acc"], ".:", color=c,
                alpha=0.6, label=f"{algo} grid")
        if not grid.empty:
            o = oracle_of(grid, b_acc, study.target)
            ax.scatter([o.bytes_per_iteration / b_bytes], [100 * o.final_acc], marker="D",
                       facecolors="none", edgecolors=c, s=80, label=f"{algo} Oracle")
        if not scout.empty:
            ax.scatter(scout["bytes_per_iteration"] / b_bytes, 100 * scout["final_acc"],
                       marker="*", color=c, s=160, label=f"{algo} SkewScout")
    ax.axhline(100 * (b_acc - study.target), color="grey", lw=0.8, ls=":",
               label="BSP - target")
    ax.set_xscale("log")
    ax.set(xlabel="communication relative to BSP (bytes/iteration)",
           ylabel="final accuracy (%)", title=exp.name)
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, out / f"{exp.name}_comm_vs_accuracy.png")


def draw_all(study: StudyConfig, rows: dict, out_dir: str | Path) -> list[Path]:
    """Every figure of the study into ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path | None] = []
    for exp in study.experiments:
        if exp.kind == "noniid":
            made += [plot_curves(study, exp, rows, out), plot_loss_bars(study, exp, rows, out)]
        elif exp.kind == "norm":
            made.append(plot_loss_bars(study, exp, rows, out))
        elif exp.kind == "skew_degree":
            made.append(plot_skew_degree(study, exp, rows, out))
        else:
            made.append(plot_comm_vs_accuracy(study, exp, rows, out))
    return [p for p in made if p is not None]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
