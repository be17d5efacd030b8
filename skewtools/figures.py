"""Figures of a partitions x classes count matrix: a heatmap and stacked bars.

Sized from the matrix so that 42 classes x 22 partitions (Flickr-Mammal by subcontinent) stay
readable. Uses matplotlib's object API (no pyplot), so no global backend state is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from skewtools.metrics import distributions

# Cells are annotated with their share only while the grid is small enough to read them.
_ANNOTATE_MAX_CELLS = 150


def _class_labels(counts: pd.DataFrame, class_names: Sequence[str] | None) -> list[str]:
    """Column names, translated through ``class_names`` when the classes are integer ids."""
    cols = list(counts.columns)
    if class_names is None:
        return [str(c) for c in cols]
    if all(isinstance(c, int | np.integer) and 0 <= c < len(class_names) for c in cols):
        return [class_names[int(c)] for c in cols]
    raise ValueError(f"class_names has {len(class_names)} names; classes are {cols[:5]}...")


def class_colors(num_classes: int) -> list[tuple[float, ...]]:
    """Up to 60 distinct colours (tab20, tab20b, tab20c), then cycling."""
    palette = [colormaps[m](i) for m in ("tab20", "tab20b", "tab20c") for i in range(20)]
    return [palette[i % len(palette)] for i in range(num_classes)]


def plot_heatmap(
    counts: pd.DataFrame, path: str | Path, class_names: Sequence[str] | None = None
) -> Path:
    """Share of each class within each partition (rows sum to 1)."""
    share = distributions(counts.to_numpy(dtype=np.float64))
    rows, cols = share.shape
    fig = Figure(figsize=(max(6.0, 0.3 * cols + 3.0), max(3.0, 0.32 * rows + 2.0)))
    ax = fig.add_subplot()
    vmax = float(np.nanmax(share, initial=0.0)) or 1.0  # scale to the largest share: contrast
    image = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0.0, vmax=vmax)
    ax.set_xticks(range(cols), _class_labels(counts, class_names), rotation=90, fontsize=8)
    ax.set_yticks(range(rows), [str(i) for i in counts.index], fontsize=8)
    ax.set_xlabel("class")
    ax.set_ylabel("partition")
    if rows * cols <= _ANNOTATE_MAX_CELLS:
        for (r, c), v in np.ndenumerate(share):
            if v > 0:
                ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
    fig.colorbar(image, ax=ax, label="share of the partition")
    ax.set_title("label distribution per partition")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_stacked_bars(
    counts: pd.DataFrame, path: str | Path, class_names: Sequence[str] | None = None
) -> Path:
    """One horizontal bar per partition, stacked by class, length = partition size."""
    values = counts.to_numpy(dtype=np.float64)
    rows, cols = values.shape
    labels = _class_labels(counts, class_names)
    legend_cols = max(1, int(np.ceil(cols / 24)))
    fig = Figure(
        figsize=(
            8.0 + 1.6 * legend_cols,
            max(3.0, 0.35 * rows + 1.5, 0.18 * cols / legend_cols + 1.0),
        )
    )
    ax = fig.add_subplot()
    left = np.zeros(rows)
    y = np.arange(rows)
    for c, color in enumerate(class_colors(cols)):
        ax.barh(y, values[:, c], left=left, color=color, label=labels[c], height=0.8)
        left += values[:, c]
    ax.set_yticks(y, [str(i) for i in counts.index], fontsize=8)
    ax.invert_yaxis()  # first partition on top, as in the table
    ax.set_xlabel("samples")
    ax.set_title("partition sizes by class")
    ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, ncols=legend_cols, frameon=False
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
