"""The manifest's typed schema, and one reader for manifests old and new (docs/reference.md §1).

``manifest.parquet`` has one row per kept image. Written by :func:`normalize_manifest`:

- ``key`` (the shard sample key, ``fm<photo_id>``) first, then the public fields and
  ``geo_status``;
- categories (class, geography, split, geo_status) as pandas categoricals, so parquet stores
  them as dictionary columns; ``class_name``, ``continent`` and ``subcontinent`` have fixed
  category lists (all 42 classes, the 5 regions, the 22 sub-regions) whatever the build holds;
  a build from another class list has its own class names as categories, in label order;
- ``date_upload`` as a UTC timestamp, ``date_taken`` as a naive timestamp (the camera's local
  time, as Flickr gives it);
- missing values as nulls: "" and "unknown" in text columns, 0 for no date or no accuracy,
  -1 for no license or no cleaning rank. ``geo_status`` says why a photo has no continent
  (``at_sea``, ``antarctica``, ...), "ok" when placed;
- ``clean_score`` float64 even when every value is null (cleaning skipped).

Manifests written before this schema (Unix seconds, "" / "unknown", no ``key`` and no
``geo_status``) read the same through :func:`read_manifest`; their unplaced photos get
``geo_status`` null (the reason was not recorded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import pandas as pd

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.records import PUBLIC_FIELDS
from flickr_mammal.regions import CONTINENTS, SUBCONTINENTS, UNKNOWN

MANIFEST_COLUMNS: Final = ("key", *PUBLIC_FIELDS, "geo_status")
_FIXED_CATEGORIES: Final = {
    "class_name": CLASS_NAMES, "continent": CONTINENTS, "subcontinent": SUBCONTINENTS,
}
_CATEGORIES: Final = ("class_name", "continent", "subcontinent", "country", "country_code",
                      "split", "geo_status")
_TEXT: Final = ("photo_id", "owner", "title", "url", "sha256", "shard")
_GEO: Final = ("continent", "subcontinent", "country", "country_code")
_INTS: Final = {"label": "int64", "width": "int64", "height": "int64"}
# integer columns whose sentinel means "not known": value -> null
_NULLABLE_INTS: Final = {"accuracy": 0, "license": -1, "clean_rank": -1}


def _missing_text(values: pd.Series, also: tuple[str, ...] = ()) -> pd.Series:
    text = values.astype("object")
    return text.mask(text.isna() | text.isin(("", *also)), None)


def _date_upload(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(
            values):
        return pd.to_datetime(values, utc=True).astype("datetime64[ms, UTC]")
    seconds = pd.to_numeric(values, errors="coerce")
    seconds = seconds.where(seconds > 0)
    return pd.to_datetime(seconds, unit="s", utc=True).astype("datetime64[ms, UTC]")


def _date_taken(values: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.astype("datetime64[ms]")
    # Flickr's "0000-00-00 00:00:00" and "" have no date: coerced to NaT.
    parsed = pd.to_datetime(_missing_text(values), errors="coerce", format="%Y-%m-%d %H:%M:%S")
    return parsed.astype("datetime64[ms]")


def _geo_status(frame: pd.DataFrame) -> pd.Series:
    if "geo_status" in frame:
        return _missing_text(frame["geo_status"])
    placed = frame["continent"].astype("object").isin(CONTINENTS)
    return pd.Series("ok", index=frame.index, dtype="object").where(placed, None)


def _class_categories(out: pd.DataFrame) -> tuple[str, ...]:
    """All 42 mammals for a mammal build; another class list's names (those the rows hold) in
    label order."""
    named = out[["label", "class_name"]].dropna().drop_duplicates().sort_values("label")
    names = tuple(dict.fromkeys(named["class_name"].astype(str)))
    return CLASS_NAMES if set(names) <= set(CLASS_NAMES) else names


def normalize_manifest(frame: pd.DataFrame) -> pd.DataFrame:
    """A manifest in the typed schema, from either an old or a new one (idempotent)."""
    out = pd.DataFrame(index=frame.index)
    photo_id = frame["photo_id"].astype(str)
    out["key"] = frame["key"].astype(str) if "key" in frame else "fm" + photo_id
    for name in PUBLIC_FIELDS:
        values = frame[name] if name in frame else pd.Series(None, index=frame.index)
        if name in _GEO:
            out[name] = _missing_text(values, (UNKNOWN,))
        elif name in _TEXT or name in ("class_name", "split"):
            out[name] = _missing_text(values)
        elif name in _INTS:
            out[name] = values.astype(_INTS[name])
        elif name in _NULLABLE_INTS:
            ints = pd.to_numeric(values, errors="coerce").astype("Int64")
            out[name] = ints.mask(ints == _NULLABLE_INTS[name])
        elif name in ("latitude", "longitude", "clean_score"):
            out[name] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif name == "date_upload":
            out[name] = _date_upload(values)
        elif name == "date_taken":
            out[name] = _date_taken(values)
    out["photo_id"] = photo_id
    out["geo_status"] = _geo_status(frame)
    fixed_lists = {**_FIXED_CATEGORIES, "class_name": _class_categories(out)}
    for name in _CATEGORIES:
        fixed = fixed_lists.get(name)
        # a value outside a fixed list (a custom class) is added, never turned into null
        seen = set(out[name].dropna())
        categories = sorted(seen) if fixed is None else [*fixed, *sorted(seen - set(fixed))]
        out[name] = pd.Categorical(out[name], categories=categories)
    out = out[list(MANIFEST_COLUMNS)]
    # An imported release's partition columns (flickr_mammal.release) follow, as they are.
    paper = [c for c in frame.columns if str(c).startswith("paper_")]
    return pd.concat([out, frame[paper]], axis=1).reset_index(drop=True) if paper \
        else out.reset_index(drop=True)


def read_manifest(path: str | Path) -> pd.DataFrame:
    """``manifest.parquet`` (or a build folder holding one) in the typed schema."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}; build one with "
                                "python -m pipelines.build_dataset")
    return normalize_manifest(pd.read_parquet(path))


def write_manifest(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write ``frame`` in the typed schema to ``path``; return what was written."""
    typed = normalize_manifest(frame)
    typed.to_parquet(path, index=False)
    return typed
