"""Skew reports: a per-partition metrics table, a summary, CSV files and figures.

:func:`skew_report` is a pure function of the count matrix (see :mod:`skewtools.metrics`);
:func:`write_report` saves it; :func:`run_report` is the whole job behind
``python -m pipelines.skew_report`` (load labels, partition, measure, write).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewtools import metrics
from skewtools.io import atomic_write_text, atomic_write_with
from skewtools.partitioners import partition
from skewtools.samples import as_samples

log = logging.getLogger(__name__)

# Above this many samples a partitioning is saved as Parquet rather than JSON.
_JSON_LIMIT = 200_000


@dataclass(frozen=True)
class SkewReport:
    """``counts`` (partitions x classes), ``table`` (metrics per partition), ``pairwise_js``
    (partitions x partitions) and ``summary`` (one number each for the whole partitioning)."""

    counts: pd.DataFrame
    table: pd.DataFrame
    pairwise_js: pd.DataFrame
    summary: dict[str, float]


def skew_report(counts: pd.DataFrame) -> SkewReport:
    """All metrics of a count matrix (rows = partitions, columns = classes)."""
    values = counts.to_numpy(dtype=np.float64)
    p, q = metrics.distributions(values), metrics.global_distribution(values)
    sizes = values.sum(axis=1)
    table = pd.DataFrame(
        {
            "size": sizes.astype(np.int64),
            "share": sizes / sizes.sum(),
            "classes_present": (values > 0).sum(axis=1),
            "effective_classes": metrics.effective_classes(values),
            "tv": metrics.total_variation(p, q),
            "js": metrics.js_divergence(p, q),
            "hellinger": metrics.hellinger(p, q),
            "emd": metrics.emd(p, q),
        },
        index=counts.index,
    )
    pair = metrics.pairwise_js(values)
    off_diag = pair[~np.eye(len(pair), dtype=bool)]
    summary = {
        "num_partitions": int(len(values)),
        "num_classes": int(values.shape[1]),
        "num_samples": int(sizes.sum()),
        "skew_score": metrics.skew_score(values),
        "size_gini": metrics.size_gini(sizes),
        "mean_tv": float(np.nanmean(table["tv"])) if len(table) else 0.0,
        "mean_js": float(np.nanmean(table["js"])) if len(table) else 0.0,
        "mean_pairwise_js": float(np.nanmean(off_diag)) if off_diag.size else 0.0,
        "mean_effective_classes": float(np.nanmean(table["effective_classes"])),
    }
    return SkewReport(
        counts=counts,
        table=table,
        pairwise_js=pd.DataFrame(pair, index=counts.index, columns=counts.index),
        summary=summary,
    )


def format_report(report: SkewReport) -> str:
    """The table and summary as text, for printing."""
    summary = "\n".join(
        f"{k:>24}: {v:.4f}" if isinstance(v, float) else f"{k:>24}: {v}"
        for k, v in report.summary.items()
    )
    return f"{report.table.to_string(float_format=lambda x: f'{x:.4f}')}\n\n{summary}"


def write_report(
    report: SkewReport, out_dir: str | Path, class_names: Sequence[str] | None = None
) -> dict[str, Path]:
    """Write ``partitions.csv``, ``counts.csv``, ``pairwise_js.csv``, ``summary.json`` and
    the figures ``heatmap.png`` and ``stacked_bars.png``; returns the paths by name."""
    from skewtools.figures import plot_heatmap, plot_stacked_bars

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "table": out / "partitions.csv",
        "counts": out / "counts.csv",
        "pairwise_js": out / "pairwise_js.csv",
        "summary": out / "summary.json",
        "heatmap": out / "heatmap.png",
        "stacked_bars": out / "stacked_bars.png",
    }
    atomic_write_with(paths["table"], report.table.to_csv)
    atomic_write_with(paths["counts"], report.counts.to_csv)
    atomic_write_with(paths["pairwise_js"], report.pairwise_js.to_csv)
    atomic_write_text(paths["summary"], json.dumps(report.summary, indent=2) + "\n")
    plot_heatmap(report.counts, paths["heatmap"], class_names)
    plot_stacked_bars(report.counts, paths["stacked_bars"], class_names)
    return paths


@dataclass(frozen=True)
class ReportConfig:
    """One ``skew_report`` run: labels from ``data`` (``.parquet`` manifest or ``.npy``)."""

    data: Path
    scheme: str
    out_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    label_column: str = "label"
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if Path(self.data).suffix not in (".parquet", ".npy"):
            raise ValueError(f"data must be a .parquet manifest or a .npy label array: {self.data}")
        if not Path(self.data).is_file():
            raise ValueError(f"no such file: {self.data}")


def load_labels(path: str | Path,
                prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
                ) -> pd.DataFrame | np.ndarray:
    """A manifest DataFrame (``.parquet``, passed through ``prepare`` when given: e.g. a
    dataset's own reader that types its columns) or a 1-D label array (``.npy``)."""
    path = Path(path)
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
        return prepare(frame) if prepare is not None else frame
    labels = np.load(path, allow_pickle=False)
    return labels.reshape(-1) if labels.ndim == 2 and 1 in labels.shape else labels


def run_report(config: ReportConfig,
               prepare: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
               ) -> tuple[SkewReport, dict[str, Path]]:
    """Partition the labels, measure the skew, write tables, figures and the partitioning.

    ``prepare`` goes to :func:`load_labels` (skewtools knows no dataset: the caller does)."""
    # One Samples view for both steps, so the labels are encoded to class codes only once.
    samples = as_samples(load_labels(config.data, prepare), config.label_column)
    p = partition(config.scheme, samples, label_column=config.label_column, **config.params)
    log.info("%s: %d partitions, %d dropped", config.scheme, p.num_partitions, p.dropped)
    report = skew_report(metrics.count_matrix(p, samples))
    paths = write_report(report, config.out_dir, config.class_names)
    suffix = ".json" if p.num_samples <= _JSON_LIMIT else ".parquet"
    paths["partitioning"] = Path(config.out_dir) / f"partitioning{suffix}"
    p.save(paths["partitioning"])
    return report, paths
