"""Tiny hand-made metadata dumps (YFCC100M TSV, .bz2, parquet) for the dump-search tests."""

from __future__ import annotations

import bz2
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pyarrow as pa
import pyarrow.parquet as pq

from flickr_mammal.dump.read import YFCC_COLUMNS

LO, HI = 1_300_000_000, 1_600_000_000
CC_BY = "Attribution License"


def row(pid: int, title: str = "", *, description: str = "", tags: str = "",
        lat: Any = 48.86, lon: Any = 2.35, license: str = CC_BY, uploaded: int = LO + 1000,
        marker: int = 0, url: str | None = None, server: str = "7205",
        secret: str = "5192fe3be9") -> dict[str, Any]:
    """One YFCC100M row (column name -> value; text already URL-encoded as in the dump)."""
    return {
        "line": str(pid), "photoid": str(pid), "hash": f"{pid:032x}", "uid": "61048402@N08",
        "unickname": "some+one", "datetaken": "2011-11-07 07:20:22.0",
        "dateuploaded": str(uploaded), "capturedevice": "Canon+EOS", "title": title,
        "description": description, "usertags": tags, "machinetags": "",
        "longitude": "" if lon is None else str(lon), "latitude": "" if lat is None else str(lat),
        "accuracy": "16", "pageurl": f"http://www.flickr.com/photos/61048402@N08/{pid}/",
        "downloadurl": (f"http://farm7.staticflickr.com/{server}/{pid}_{secret}.jpg"
                        if url is None else url),
        "licensename": license, "licenseurl": "", "serverid": server, "farmid": "7",
        "secret": secret, "secretoriginal": "8ed1387833", "ext": "jpg", "marker": str(marker),
    }


def write_tsv(rows: list[dict[str, Any]], path: Path) -> Path:
    text = "".join("\t".join(r[c] for c in YFCC_COLUMNS) + "\n" for r in rows).encode()
    if path.suffix == ".bz2":
        path.write_bytes(bz2.compress(text))
    else:
        path.write_bytes(text)
    return path


def write_parquet(rows: list[dict[str, Any]], path: Path, *, rename: dict[str, str] | None = None,
                  row_group_size: int | None = None) -> Path:
    """The rows as parquet with typed columns (ids and dates as integers, coordinates as
    nullable doubles) and decoded text, like parquet re-publications of YFCC100M."""
    def num(v: str) -> float | None:
        return float(v) if v else None

    columns = {c: [r[c] for r in rows] for c in YFCC_COLUMNS if c not in ("line", "hash")}
    for c in ("title", "description", "usertags", "unickname"):
        columns[c] = [unquote_plus(v) for v in columns[c]]
    columns["photoid"] = [int(v) for v in columns["photoid"]]
    columns["dateuploaded"] = [int(v) for v in columns["dateuploaded"]]
    columns["marker"] = [int(v) for v in columns["marker"]]
    for c in ("latitude", "longitude"):
        columns[c] = [num(v) for v in columns[c]]
    table = pa.table(columns)
    if rename:
        table = table.rename_columns([rename.get(c, c) for c in table.column_names])
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def write_dump(rows: list[dict[str, Any]], path: Path) -> Path:
    """By the file's suffix: .tsv, .bz2 or .parquet."""
    if path.suffix == ".parquet":
        return write_parquet(rows, path)
    return write_tsv(rows, path)


# One row per rule (hand-checked expectations in test_dump_search.py).
RULE_ROWS = [
    row(101, "A+Sea+Lion+on+the+rocks"),                      # sea lion (phrase, nested lion)
    row(102, "sunset", tags="beach,sealion"),                  # sea lion (joined tag form)
    row(103, "Lions+at+dusk"),                                 # nothing: "lions" is not "lion"
    row(104, "location", tags="education"),                    # nothing: no whole word
    row(105, "IMG_0001", description="My+dog%2C+Rex"),         # dog (description, %2C)
    row(106, "Cat", tags="dog"),                               # cat + dog: ambiguous
    row(107, "lion", tags="sea+lion"),                         # lion + sea lion: ambiguous
    row(108, "cat", marker=1),                                 # video
    row(109, "cat", license="All Rights Reserved"),            # licence 0 not allowed
    row(110, "cat", uploaded=HI + 1),                          # uploaded after the window
    row(111, "cat", lat=None, lon=None),                       # no coordinates
    row(112, "CAT", lat=91.5, lon=10.0),                       # kept, but bad_geo like the API
    row(113, "zebra", license="Attribution-NonCommercial-NoDerivs License"),  # licence 3
    row(114, "dog", url="", server="", secret=""),             # no URL at all: no_url
    row(115, "dog", url=""),                                   # URL built from server/secret
]
