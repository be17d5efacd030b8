"""``stats.json``: what every stage did, counted from the catalog (docs/reference.md §1).

Counts are read from the catalog's final state, not tallied while stages run, so a build that
was interrupted and resumed writes the same stats as an uninterrupted one. Failure reasons are
the part of a record's ``error`` before the first ``:`` (``http_404``, ``bad_geo``,
``ambiguous``, ``duplicate``, ``rejected``, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from flickr_mammal.catalog import Catalog
from flickr_mammal.records import WITH_IMAGE, Status
from skewtools.io import atomic_write_text

STATS_VERSION = 1


def _total(by_status: dict[str, dict[str, int]], statuses: tuple[Status, ...]) -> int:
    return sum(sum(by_status.get(str(s), {}).values()) for s in statuses)


def _reasons(by_status: dict[str, dict[str, int]], status: Status) -> dict[str, int]:
    return {k or "(none)": v for k, v in by_status.get(str(status), {}).items()}


def compute_stats(catalog: Catalog, shard_index: pd.DataFrame | None = None) -> dict[str, Any]:
    """Counts per stage, per status and per failure reason, plus per-class outcomes."""
    by_status = catalog.counts()
    records = sum(sum(r.values()) for r in by_status.values())
    stats: dict[str, Any] = {
        "stats_version": STATS_VERSION,
        "records": records,
        "search": {
            "slices": catalog.slice_count(),
            "candidates": records,
            "ambiguous": _total(by_status, (Status.AMBIGUOUS,)),
            "pending_download": _total(by_status, (Status.SEARCHED,)),
            # Classes not fully enumerated: {class: {over_cap / bad_answer / call_budget: n}}
            "incomplete": catalog.slice_errors(),
        },
        "download": {
            "downloaded": _total(by_status, WITH_IMAGE),
            "failed": _total(by_status, (Status.DOWNLOAD_FAILED,)),
            "failures": _reasons(by_status, Status.DOWNLOAD_FAILED),
            "duplicates": _total(by_status, (Status.DUPLICATE,)),
        },
        "clean": {
            "classifier": catalog.get_meta("clean", {}).get("classifier"),
            "pending": _total(by_status, (Status.DOWNLOADED,)),
            "kept": _total(by_status, (Status.KEPT,)),
            "rejected": _total(by_status, (Status.REJECTED,)),
            "failed": _total(by_status, (Status.CLEAN_FAILED,)),
            "failures": _reasons(by_status, Status.CLEAN_FAILED),
        },
        "geocode": {
            "geo_status": {k or "(pending)": v for (k,), v in
                           catalog.group_counts("geo_status", status=Status.KEPT).items()},
        },
        "status": by_status,
        "per_class": _per_class(catalog),
    }
    if catalog.get_meta("metadata") is not None:  # built from a metadata dump
        stats["search"]["metadata"] = catalog.get_meta("metadata")
    if shard_index is not None:
        stats["shards"] = {
            "samples": int(len(shard_index)),
            "shards": int(shard_index["shard"].nunique()),
            "per_split": {str(k): int(v) for k, v in
                          shard_index["split"].value_counts().sort_index().items()},
        }
    return stats


def _per_class(catalog: Catalog) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (class_name, status), n in catalog.group_counts("class_name", "status").items():
        out.setdefault(class_name, {})[status] = n
    return out


def write_stats(stats: dict[str, Any], path: str | Path) -> None:
    """Write ``stats.json`` atomically (sorted keys: stable bytes for the same build)."""
    text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
    atomic_write_text(path, text)
