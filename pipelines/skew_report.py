"""Partition a labelled dataset and report how skewed it is (docs/reference.md §3, §5).

    python -m pipelines.skew_report manifest.parquet --scheme by_attribute \
        --param attribute=subcontinent --class-names flickr_mammal --out report/
    python -m pipelines.skew_report labels.npy --scheme label_skew \
        --param num_partitions=5 --param noniid_fraction=0.6 --param seed=0 --out report/

Writes partitions.csv, counts.csv, pairwise_js.csv, summary.json, heatmap.png,
stacked_bars.png and the partitioning itself (JSON or Parquet) under --out, and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from pipelines._cli import parse_param
from skewtools import get_partitioner, list_partitioners
from skewtools.report import ReportConfig, format_report, run_report


def class_names(value: str | None) -> tuple[str, ...] | None:
    """``flickr_mammal`` for the 42 Flickr-Mammal names, or a text file with one name a line."""
    if value is None:
        return None
    if value == "flickr_mammal":
        from flickr_mammal.classes import CLASS_NAMES

        return tuple(CLASS_NAMES)
    return tuple(line.strip() for line in Path(value).read_text().splitlines() if line.strip())


def prepare_manifest(frame: Any) -> Any:
    """A Flickr-Mammal manifest, old or new, in its one typed form ("unknown" -> null);
    other tables unchanged."""
    if {"photo_id", "continent", "label"} <= set(frame.columns):
        from flickr_mammal.manifest import normalize_manifest

        return normalize_manifest(frame)
    return frame


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m pipelines.skew_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("data", type=Path, help="manifest.parquet (with a label column) or labels .npy")
    ap.add_argument("--scheme", required=True, help=f"one of: {', '.join(list_partitioners())}")
    ap.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="a partitioner parameter, repeatable (e.g. num_partitions=5 seed=0)",
    )
    ap.add_argument("--label-column", default="label", help="manifest column holding the labels")
    ap.add_argument("--class-names", help="'flickr_mammal' or a file with one class name a line")
    ap.add_argument("--out", type=Path, required=True, help="folder for tables and figures")
    return ap  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        # Before any data is read: a parquet read starts Arrow's CPU thread pool, and a process
        # exiting right after it can abort in the pool's teardown ("terminate called without
        # an active exception", exit 134; apache/arrow#34314). A bad name needs no data.
        get_partitioner(args.scheme)
        config = ReportConfig(
            data=args.data,
            scheme=args.scheme,
            out_dir=args.out,
            params=dict(args.param),
            label_column=args.label_column,
            class_names=class_names(args.class_names),
        )
        report, paths = run_report(config, prepare_manifest)
    except (ValueError, TypeError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_report(report))
    print(f"\nwrote {', '.join(str(p) for p in paths.values())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
