"""The label-skew report of a build: count tables and heatmaps (docs/reference.md §1).

The paper's Flickr-Mammal finding: each top-3 mammal of a continent holds 44-92% of that
mammal's global images, and subcontinents are more skewed still. From ``manifest.parquet`` this
writes into ``DIR/report/``:

- ``class_by_continent.csv`` / ``class_by_subcontinent.csv``: image counts, one row per class,
  one column per region (placed images only) plus ``unplaced`` (continent "unknown": bad
  coordinates, at sea, Antarctica) and ``total``;
- ``top3_per_continent.csv`` / ``.md``: each continent's three most frequent mammals, with the
  share of that mammal's placed images taken in the continent;
- ``heatmap_continent.png`` / ``heatmap_subcontinent.png``: each class's distribution across
  regions (row-normalised, so classes of any size compare).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from flickr_mammal.regions import CONTINENTS, SUBCONTINENTS  # noqa: E402

UNPLACED = "unplaced"


def count_table(manifest: pd.DataFrame, level: str) -> pd.DataFrame:
    """Images per class (rows, label order) x region of ``level`` (columns), with totals."""
    regions = list(CONTINENTS if level == "continent" else SUBCONTINENTS)
    is_placed = manifest["continent"].isin(CONTINENTS)  # not "unknown", not yet geocoded
    classes = manifest.drop_duplicates("class_name").sort_values("label")["class_name"].astype(str)
    table = pd.DataFrame(0, index=pd.Index(classes, name="class_name"), columns=regions)
    placed = manifest[is_placed].groupby(["class_name", level], observed=True).size()
    for (name, region), n in placed.items():
        table.loc[name, region] = n
    unplaced = manifest[~is_placed]["class_name"].value_counts()
    table[UNPLACED] = unplaced.reindex(table.index, fill_value=0)
    table["total"] = table.sum(axis=1)
    table.index.name = "class_name"
    table.columns.name = None
    return table.astype("int64")


def top3_per_continent(continent_counts: pd.DataFrame, k: int = 3) -> pd.DataFrame:
    """Each continent's ``k`` most frequent mammals and their share of the mammal's images.

    Share = the mammal's images in the continent / its placed images worldwide. Ties in count
    are broken by class order, so the table is deterministic.
    """
    placed_total = continent_counts[list(CONTINENTS)].sum(axis=1)
    rows = []
    for continent in CONTINENTS:
        counts = continent_counts[continent]
        order = sorted(counts.index, key=lambda c: -counts[c])  # stable: ties keep class order
        for rank, name in enumerate([c for c in order if counts[c] > 0][:k], start=1):
            rows.append({
                "continent": continent, "rank": rank, "class_name": name,
                "images": int(counts[name]), "global_images": int(placed_total[name]),
                "share": round(float(counts[name] / placed_total[name]), 4),
            })
    return pd.DataFrame(rows, columns=["continent", "rank", "class_name", "images",
                                       "global_images", "share"])


def top3_markdown(top3: pd.DataFrame) -> str:
    """The top-3 table as GitHub markdown (share as a percentage)."""
    lines = ["| continent | rank | mammal | images | of its global images |",
             "|---|---:|---|---:|---:|"]
    for row in top3.itertuples(index=False):
        lines.append(f"| {row.continent} | {row.rank} | {row.class_name} | {row.images} | "
                     f"{row.share:.0%} |")
    return "\n".join(lines) + "\n"


def counts_markdown(table: pd.DataFrame) -> str:
    """A count table (class x region) as GitHub markdown."""
    header = "| class | " + " | ".join(table.columns) + " |"
    rule = "|---|" + "---:|" * len(table.columns)
    body = [f"| {name} | " + " | ".join(str(v) for v in row) + " |"
            for name, row in zip(table.index, table.to_numpy().tolist(), strict=True)]
    return "\n".join([header, rule, *body]) + "\n"


def heatmap(table: pd.DataFrame, regions: list[str], title: str, path: Path) -> None:
    """Row-normalised class x region heatmap, sized so 42 classes x 22 regions stay legible."""
    if table.empty:  # nothing kept yet: still write a (blank) figure so the report is complete
        table = pd.DataFrame(0, index=pd.Index(["(no images)"]), columns=regions)
    counts = table[regions].to_numpy(dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    width = max(6.0, 1.2 + 0.42 * len(regions))
    height = max(3.0, 1.6 + 0.26 * len(table))
    fig, ax = plt.subplots(figsize=(width, height), dpi=120)
    image = ax.imshow(share, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(regions)), regions, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(table)), [f"{n} ({int(t)})" for n, t in
                                      zip(table.index, totals[:, 0], strict=True)], fontsize=8)
    if len(regions) <= 8:  # room to print the percentages
        for (i, j), value in np.ndenumerate(share):
            ax.text(j, i, f"{value:.0%}", ha="center", va="center", fontsize=6,
                    color="white" if value < 0.5 else "black")
    ax.set_title(title, fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.04, label="share of the class's placed images")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)


@dataclass(frozen=True, eq=False)
class ReportTables:
    """A manifest's count tables and top-3 table: built once, for report/ and DATASET.md."""

    continent: pd.DataFrame
    subcontinent: pd.DataFrame
    top3: pd.DataFrame

    @classmethod
    def from_manifest(cls, manifest: pd.DataFrame) -> ReportTables:
        continent = count_table(manifest, "continent")
        return cls(continent, count_table(manifest, "subcontinent"), top3_per_continent(continent))


def write_report(manifest: pd.DataFrame, out_dir: str | Path,
                 tables: ReportTables | None = None) -> dict[str, Path]:
    """Write the tables and heatmaps of a build's manifest into ``out_dir``; return the paths.

    ``tables``: ``ReportTables.from_manifest(manifest)`` when the caller has them already.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = ReportTables.from_manifest(manifest) if tables is None else tables
    continent, subcontinent, top3 = tables.continent, tables.subcontinent, tables.top3
    paths = {
        "class_by_continent": out / "class_by_continent.csv",
        "class_by_subcontinent": out / "class_by_subcontinent.csv",
        "top3_csv": out / "top3_per_continent.csv",
        "top3_md": out / "top3_per_continent.md",
        "heatmap_continent": out / "heatmap_continent.png",
        "heatmap_subcontinent": out / "heatmap_subcontinent.png",
    }
    continent.to_csv(paths["class_by_continent"])
    subcontinent.to_csv(paths["class_by_subcontinent"])
    top3.to_csv(paths["top3_csv"], index=False)
    paths["top3_md"].write_text(top3_markdown(top3), encoding="utf-8")
    heatmap(continent, list(CONTINENTS), "Flickr-Mammal: classes across continents",
            paths["heatmap_continent"])
    heatmap(subcontinent, list(SUBCONTINENTS), "Flickr-Mammal: classes across subcontinents",
            paths["heatmap_subcontinent"])
    return paths


# ---- DATASET.md statistics section ----------------------------------------------------------
SECTION_BEGIN = "<!-- build-stats:begin -->"
SECTION_END = "<!-- build-stats:end -->"


def _headline(stats: dict) -> list[str]:
    dl, clean = stats["download"], stats["clean"]
    geo = stats.get("geocode", {}).get("geo_status", {})
    failures = ", ".join(f"{k} {v}" for k, v in dl["failures"].items()) or "none"
    unplaced = ", ".join(f"{k} {v}" for k, v in geo.items() if k != "ok") or "none"
    return [
        "| stage | count |", "|---|---:|",
        f"| search: candidate photos | {stats['search']['candidates']} |",
        f"| search: ambiguous (found for 2+ classes, dropped) | {stats['search']['ambiguous']} |",
        f"| download: images fetched | {dl['downloaded']} |",
        f"| download: failed ({failures}) | {dl['failed']} |",
        f"| download: duplicate images (same sha256, dropped) | {dl['duplicates']} |",
        f"| clean ({clean['classifier']}): kept | {clean['kept']} |",
        f"| clean: rejected | {clean['rejected']} |",
        f"| clean: unreadable | {clean['failed']} |",
        f"| geocode: placed on a continent | {geo.get('ok', 0)} |",
        f"| geocode: unplaced ({unplaced}) | {sum(v for k, v in geo.items() if k != 'ok')} |",
    ]


def datasheet_section(manifest: pd.DataFrame, stats: dict, title: str,
                      tables: ReportTables | None = None) -> str:
    """The statistics section of DATASET.md for one build (markdown, between the markers).

    ``tables``: ``ReportTables.from_manifest(manifest)`` when the caller has them already (it
    wrote the report); built from ``manifest`` otherwise.
    """
    tables = ReportTables.from_manifest(manifest) if tables is None else tables
    parts = [
        SECTION_BEGIN, f"### {title}", "", *_headline(stats), "",
        "Images per class and continent (`report/class_by_continent.csv`):", "",
        counts_markdown(tables.continent),
        "Top-3 mammals per continent and their share of the mammal's placed images "
        "(`report/top3_per_continent.md`):", "", top3_markdown(tables.top3), SECTION_END,
    ]
    return "\n".join(parts)


def replace_section(document: str, section: str) -> str:
    """``document`` with the text between the section markers replaced by ``section``."""
    start, end = document.find(SECTION_BEGIN), document.find(SECTION_END)
    if start < 0 or end < start:
        raise ValueError(f"no {SECTION_BEGIN} ... {SECTION_END} markers in the document")
    return document[:start] + section + document[end + len(SECTION_END):]
