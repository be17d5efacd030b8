"""Flickr-Mammal as a Hugging Face ``datasets`` dataset, with flat typed columns.

``to_hf_dataset(root, split)`` reads one split of a shard set (the tars plus ``shards.parquet``)
into a ``datasets.Dataset`` whose columns are plain features: ``image`` (Image), ``label``
(ClassLabel over the 42 class names), the geography as strings, coordinates as floats and the
two dates as timestamps. So the tools built on ``datasets`` work with no glue, e.g.
``flwr_datasets.partitioner.NaturalIdPartitioner(partition_by="continent")``.

Unplaced photos (continent "unknown": at sea, Antarctica, bad coordinates) are left out, the
rule of :func:`flickr_mammal.reader.load_partitions`, so every continent partition here holds
exactly the samples of ``load_partitions(by="continent")``.

Needs the optional extra ``hf``: ``pip install -e '.[hf]'``.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.reader import split_rows
from flickr_mammal.regions import UNKNOWN

MISSING_EXTRA = "flickr_mammal.hf needs the 'datasets' package: pip install -e '.[hf]'"
GEO_COLUMNS = ("continent", "subcontinent", "country", "country_code")


def require_datasets() -> Any:
    """The ``datasets`` module, or an ImportError that names the extra to install."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError(MISSING_EXTRA) from exc
    return datasets


def features() -> Any:
    """The ``datasets.Features`` of every Flickr-Mammal split."""
    ds = require_datasets()
    text, real = ds.Value("string"), ds.Value("float64")
    return ds.Features({
        "image": ds.Image(),
        "label": ds.ClassLabel(names=list(CLASS_NAMES)),
        **{name: text for name in GEO_COLUMNS},
        "latitude": real, "longitude": real,
        "photo_id": text, "owner": text, "license": ds.Value("int32"),
        "date_upload": ds.Value("timestamp[s]"),   # UTC
        "date_taken": ds.Value("timestamp[s]"),    # the camera's local time, as Flickr gives it
        "key": text,
    })


def _text(value: Any) -> str | None:
    return None if value in (None, "", UNKNOWN) else str(value)


def _date_taken(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if value else None
    except (TypeError, ValueError):   # Flickr sometimes gives "0000-00-00 00:00:00"
        return None


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
        "date_upload": (datetime.fromtimestamp(upload, UTC).replace(tzinfo=None)
                        if upload > 0 else None),
        "date_taken": _date_taken(meta.get("date_taken")),
        "key": key,
    }


def _generate(shards: list[str], keys: frozenset[str], token: str) -> Iterator[dict[str, Any]]:
    """Rows of the kept ``keys`` in the ``shards``, in shard order (``token`` only keys the
    cache: it changes when the shards do)."""
    del token
    for path in shards:
        pending: dict[str, dict[str, bytes]] = {}
        with tarfile.open(path) as tar:
            for info in tar:
                key, _, ext = info.name.partition(".")
                if key not in keys or not info.isfile():
                    continue   # another split's or an unplaced sample: never read
                got = pending.setdefault(key, {})
                got[ext] = tar.extractfile(info).read()
                if {"cls", "jpg", "json"} <= got.keys():
                    yield sample_row(key, pending.pop(key))


def placed_rows(root: str | Path, split: str) -> tuple[pd.DataFrame, Path]:
    """The shard-index rows of ``split`` that have a continent, and the shard folder."""
    _, rows, shard_dir, _ = split_rows(root, split)
    placed = ~(rows["continent"].isna() | rows["continent"].isin([UNKNOWN, ""]))
    return rows[placed], shard_dir


def to_hf_dataset(root: str | Path, split: str = "train", streaming: bool = False,
                  cache_dir: str | Path | None = None) -> Any:
    """One split as a ``datasets.Dataset`` (``IterableDataset`` with ``streaming``).

    ``root`` is a shard folder or a build root with ``shards/``. The Dataset is written once
    to the ``datasets`` cache (``cache_dir``, default ~/.cache/huggingface/datasets) and
    rebuilt when the shards change; the streaming one reads the tars on every pass, its
    shards divided between DataLoader workers.
    """
    ds = require_datasets()
    rows, shard_dir = placed_rows(root, split)
    shards = [str(shard_dir / name) for name in sorted(rows["shard"].unique())]
    stamp = hashlib.sha256()
    for path in shards:
        st = Path(path).stat()
        stamp.update(f"{path}:{st.st_size}:{st.st_mtime_ns};".encode())
    kwargs = {"shards": shards, "keys": frozenset(rows["key"]), "token": stamp.hexdigest()}
    if streaming:
        return ds.IterableDataset.from_generator(_generate, features=features(),
                                                 gen_kwargs=kwargs)
    return ds.Dataset.from_generator(_generate, features=features(), gen_kwargs=kwargs,
                                     split=ds.NamedSplit(split),
                                     cache_dir=None if cache_dir is None else str(cache_dir))
