"""Flickr-Mammal as a Hugging Face ``datasets`` dataset, with flat typed columns.

``to_hf_dataset(root, split)`` reads one split of a shard set (the tars plus ``shards.parquet``)
into a ``datasets.Dataset`` whose columns are plain features: ``image`` (Image), ``label``
(ClassLabel over the build's class names in label order: the 42 mammals, or those of the class
file it was built from, as its shard index records them), the geography as strings, coordinates
as floats and the dates as numbers and text that every formatter takes: ``date_upload`` in Unix
seconds (int64, UTC), ``date_upload_utc`` the same instant as ISO 8601 text with its ``+00:00``
offset, and ``date_taken`` the camera's local time as Flickr gives it (``YYYY-MM-DD HH:MM:SS``,
no zone).
So the tools built on ``datasets`` work with no glue: ``with_format("torch")`` in a
``DataLoader`` (a timestamp column would raise there), and
``flwr_datasets.partitioner.NaturalIdPartitioner(partition_by="continent")``. Missing text is
``""`` (a ``None`` first in a batch stops torch's default collate); a missing number is null.

The build's ``val`` split is named ``validation`` here, the Hub's name (``split="val"`` and
``split="validation"`` both read it). Every sample is checked against its index row as
:func:`flickr_mammal.reader.load_partitions` checks it (label, split, geography, JPEG digest,
the sample count of each shard, the index against the manifest).

Unplaced photos (continent "unknown": at sea, Antarctica, bad coordinates) are left out, the
rule of :func:`flickr_mammal.reader.load_partitions`, so every continent partition here holds
exactly the samples of ``load_partitions(by="continent")``.

Needs the optional extra ``hf``: ``pip install -e '.[hf]'``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from flickr_mammal.integrity import (
    DatasetIntegrityError,
    ShardTotals,
    checked_samples,
    row_facts,
)
from flickr_mammal.regions import UNKNOWN
from flickr_mammal.shard_index import class_names, open_split, shard_totals
from skewtools.loaders.shard_files import ShardPathError, shard_path, shard_samples

MISSING_EXTRA = "flickr_mammal.hf needs the 'datasets' package: pip install -e '.[hf]'"
GEO_COLUMNS = ("continent", "subcontinent", "country", "country_code")
# Flickr's licence ids (flickr.photos.licenses.getInfo) -> names.
FLICKR_LICENSES: Final = {
    0: "All Rights Reserved", 1: "CC BY-NC-SA 2.0", 2: "CC BY-NC 2.0", 3: "CC BY-NC-ND 2.0",
    4: "CC BY 2.0", 5: "CC BY-SA 2.0", 6: "CC BY-ND 2.0", 7: "No known copyright restrictions",
    8: "United States Government Work", 9: "CC0 1.0", 10: "Public Domain Mark 1.0",
}
# The build's split names -> the Hub's.
HF_SPLITS: Final = {"train": "train", "val": "validation"}


def hf_split(split: str) -> str:
    """The Hub's name of a build split (``val`` -> ``validation``; others unchanged)."""
    return HF_SPLITS.get(split, split)


def build_split(split: str) -> str:
    """The build's name of a split given by either name."""
    return {hub: build for build, hub in HF_SPLITS.items()}.get(split, split)


def require_datasets() -> Any:
    """The ``datasets`` module, or an ImportError that names the extra to install."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(MISSING_EXTRA) from exc
    return datasets


def features(names: Sequence[str]) -> Any:
    """The ``datasets.Features`` of every split of a build whose classes are ``names`` (label
    order; :func:`flickr_mammal.shard_index.class_names` reads them from a shard index)."""
    ds = require_datasets()
    text, real = ds.Value("string"), ds.Value("float64")
    return ds.Features({
        "image": ds.Image(),
        "label": ds.ClassLabel(names=list(names)),
        **{name: text for name in GEO_COLUMNS},
        "latitude": real, "longitude": real,
        "photo_id": text, "owner": text, "license": ds.Value("int32"),
        "license_name": text,
        "date_upload": ds.Value("int64"),       # Unix seconds: an instant, UTC
        "date_upload_utc": text,                # the same, ISO 8601 with "+00:00"
        "date_taken": text,                     # the camera's local time, as Flickr gives it
        "key": text,
    })


def _text(value: Any) -> str:
    return "" if value in (None, "", UNKNOWN) else str(value)


def _date_taken(value: Any) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S") if value else ""
    except (TypeError, ValueError):   # Flickr sometimes gives "0000-00-00 00:00:00"
        return ""


def sample_row(key: str, members: dict[str, bytes]) -> dict[str, Any]:
    """One sample's tar members (``cls``, ``jpg``, ``json``) as a row of :func:`features`."""
    meta = json.loads(members["json"])
    upload = int(meta.get("date_upload") or 0)
    license_id = meta.get("license", -1)
    return {
        "image": {"bytes": members["jpg"], "path": None},
        "label": int(members["cls"]),
        **{name: _text(meta.get(name)) for name in GEO_COLUMNS},
        "latitude": meta.get("latitude"), "longitude": meta.get("longitude"),
        "photo_id": str(meta["photo_id"]), "owner": _text(meta.get("owner")),
        "license": None if license_id is None or license_id < 0 else int(license_id),
        "license_name": ("" if license_id is None or license_id < 0
                         else FLICKR_LICENSES.get(int(license_id), f"Flickr licence {license_id}")),
        "date_upload": upload if upload > 0 else None,
        "date_upload_utc": (datetime.fromtimestamp(upload, UTC).isoformat()
                            if upload > 0 else ""),
        "date_taken": _date_taken(meta.get("date_taken")),
        "key": key,
    }


def _generate(shards: list[str], rows: pd.DataFrame, totals: dict[str, int],
              token: str) -> Iterator[dict[str, Any]]:
    """Rows of the index ``rows`` from their ``shards``, in shard order, each sample checked
    against its index row (``token`` only keys the cache: it changes when the shards do)."""
    del token
    keys = frozenset(rows["key"])
    digests = (dict(zip(rows["key"], zip(rows["jpg_bytes"].astype(int), rows["jpg_sha256"],
                                         strict=True), strict=True))
               if "jpg_sha256" in rows.columns else None)
    raw = (s for s in shard_samples(shards, on_shard_end=ShardTotals(totals))
           if s["__key__"] in keys)   # another split's or an unplaced sample: skipped
    for sample in checked_samples(raw, shards, rows["shard"].value_counts().to_dict(), digests,
                                  row_facts(rows)):
        yield sample_row(sample["__key__"], sample)


def placed_rows(root: str | Path, split: str
                ) -> tuple[pd.DataFrame, Path, dict[str, int], tuple[str, ...]]:
    """The checked shard-index rows of ``split`` that have a continent, the shard folder, the
    samples per shard of the whole index and the build's class names (label order)."""
    index, rows, files = open_split(root, build_split(split))
    placed = ~(rows["continent"].isna() | rows["continent"].isin([UNKNOWN, ""]))
    return rows[placed], files.shard_dir, shard_totals(index), class_names(index)


def to_hf_dataset(root: str | Path, split: str = "train", streaming: bool = False,
                  cache_dir: str | Path | None = None) -> Any:
    """One split as a ``datasets.Dataset`` (``IterableDataset`` with ``streaming``).

    ``root`` is a shard folder or a build root with ``shards/``; ``split`` a build split or its
    Hub name (``validation`` for ``val``). The Dataset is written once to the ``datasets``
    cache (``cache_dir``, default ~/.cache/huggingface/datasets) and rebuilt when the shards
    change; the streaming one reads the tars on every pass. A damaged or edited build raises
    :class:`~flickr_mammal.integrity.DatasetIntegrityError` naming the shard and sample.
    """
    ds = require_datasets()
    rows, shard_dir, totals, names = placed_rows(root, split)
    shards = [str(shard_path(shard_dir, name)) for name in sorted(rows["shard"].unique())]
    stamp = hashlib.sha256()
    for path in shards:
        st = Path(path).stat()
        stamp.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    columns = [c for c in ("key", "shard", "split", "label", "jpg_bytes", "jpg_sha256",
                           "continent", "subcontinent", "country") if c in rows.columns]
    kwargs = {"shards": shards, "rows": rows[columns].reset_index(drop=True),
              "totals": totals, "token": stamp.hexdigest()}
    if streaming:
        return ds.IterableDataset.from_generator(_generate, features=features(names),
                                                 gen_kwargs=kwargs)
    try:
        return ds.Dataset.from_generator(_generate, features=features(names),
                                         gen_kwargs=kwargs,
                                         split=ds.NamedSplit(hf_split(build_split(split))),
                                         cache_dir=None if cache_dir is None else str(cache_dir))
    except ds.exceptions.DatasetGenerationError as exc:
        # datasets wraps the generator's error: a damaged build is the reader's own error.
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, DatasetIntegrityError | ShardPathError):
            raise cause from None
        raise
