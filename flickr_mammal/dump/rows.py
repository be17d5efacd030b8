"""One chunk of a metadata dump -> staged class matches (the dump's stand-in for search.py).

The filters are the API search's: the row's licence id in ``licenses``, its upload date in the
inclusive window, coordinates present (``has_geo``), a photo (YFCC100M marker 0, not a video).
Each row that names a class (dump_match) and passes them becomes one record per class it
names, built by :func:`search.photo_to_record` exactly like an API result (out-of-range
coordinates and rows without an image URL become DOWNLOAD_FAILED ``bad_geo`` / ``no_url``).
A row's URL loses any ``user:password@`` before it is staged, and a URL that is not http(s) on
Flickr's image hosts (or the build's ``image_hosts``) becomes DOWNLOAD_FAILED ``url_refused``
when its record enters the catalog: it is never fetched (flickr_mammal/image_hosts.py).
Rows that name a class but fail a filter are counted by the first filter they fail.

Per-class caps keep the photos with the smallest keyed hash of their id (BLAKE2b keyed with the
seed): a deterministic choice, independent of row order, so a resumed scan or a larger cap
agrees with an uninterrupted scan (a larger cap's selection contains the smaller one's).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from flickr_mammal.classes import MammalClass, get_class
from flickr_mammal.dump.match import ClassMatcher, license_id
from flickr_mammal.image_hosts import URL_REFUSED, strip_credentials, url_allowed
from flickr_mammal.records import BAD_ID, PhotoRecord, Status
from flickr_mammal.search import MAX_ACCURACY, photo_to_record

_PHOTO_ID = re.compile(r"\d{1,20}")  # Flickr ids are digit strings; they name image files
_LAST_SECOND = 253402300799  # 9999-12-31 23:59:59 UTC
# A cell no row can hold (flickr_mammal/dump/formats): the row is counted malformed.
_BAD_CELL = (ValueError, TypeError, OverflowError)
# Drop reasons, in the order rows are tested (a row counts under the first that applies).
DROP_REASONS = ("bad_id", "video", "license", "date", "no_coordinates")


@dataclass(frozen=True)
class RowFilters:
    licenses: frozenset[int]
    min_upload_date: int
    max_upload_date: int


def rank_key(photo_id: str, seed: int) -> int:
    """The per-class cap's order: a keyed 63-bit hash of the photo id (fits SQLite INTEGER)."""
    digest = hashlib.blake2b(photo_id.encode(), digest_size=8,
                             key=f"flickr-mammal-dump-{seed}".encode()).digest()
    return int.from_bytes(digest, "big") >> 1


def _float(value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def _seconds(value: Any) -> int | None:
    """Unix seconds of a date cell; None when empty or not a number; raises ValueError for a
    number no date can be (infinite, NaN, past 9999): a malformed row."""
    if isinstance(value, datetime):
        return int((value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp())
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not 0 <= number <= _LAST_SECOND:  # False for NaN too
        raise ValueError(f"date {str(value)[:40]!r} out of range")
    return int(number)


def _accuracy(value: Any) -> int:
    """Flickr's geo accuracy (0 when absent); raises ValueError outside 0..16 (malformed)."""
    if value is None or value == "":
        return 0
    number = float(value)
    if not 0 <= number <= MAX_ACCURACY:
        raise ValueError(f"accuracy {str(value)[:40]!r} out of range")
    return int(number)


def _taken(value: Any) -> str:
    """YFCC writes ``2012-02-16 09:56:37.0``; the API's ``datetaken`` has no fraction."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value or "").split(".", 1)[0]


def _photo_id(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value if value is not None else "").strip()
    return text if _PHOTO_ID.fullmatch(text) else ""


def drop_reason(row: Mapping[str, Any], filters: RowFilters) -> str:
    """The first filter ``row`` fails ("" when it passes them all)."""
    if not _photo_id(row.get("photo_id")):
        return "bad_id"
    if str(row.get("video", "0")).strip().lower() in ("1", "true"):
        return "video"
    if license_id(row.get("license")) not in filters.licenses:
        return "license"
    uploaded = _seconds(row.get("date_upload"))
    if uploaded is None or not filters.min_upload_date <= uploaded <= filters.max_upload_date:
        return "date"
    if not all(math.isfinite(_float(row.get(k))) for k in ("latitude", "longitude")):
        return "no_coordinates"
    return ""


def to_photo(row: Mapping[str, Any], matcher: ClassMatcher) -> dict[str, Any]:
    """A dump row as a flickr.photos.search result (with our EXTRAS) for photo_to_record."""
    pid = _photo_id(row.get("photo_id"))
    url = strip_credentials(str(row.get("url") or "").strip())
    if not url:
        server, secret = str(row.get("server") or ""), str(row.get("secret") or "")
        # The API path's size: z (640 px on the long side).
        url = (f"https://live.staticflickr.com/{server}/{pid}_{secret}_z.jpg"
               if server and secret else "")
    owner_name = matcher.decode(str(row.get("owner_name") or ""))
    return {
        "id": pid, "owner": str(row.get("owner") or ""), "ownername": owner_name,
        "title": matcher.decode(str(row.get("title") or "")),
        "latitude": row.get("latitude"), "longitude": row.get("longitude"),
        "accuracy": _accuracy(row.get("accuracy")), "license": license_id(row.get("license")),
        "dateupload": _seconds(row.get("date_upload")),
        "datetaken": _taken(row.get("date_taken")),
        # best_url takes the first url_* present: the letter only orders the API's sizes.
        "url_z": url,
    }


def stage_rows(texts: Mapping[str, Any], rows_at: Callable[[list[int]], list[dict[str, Any]]],
               num_rows: int, matcher: ClassMatcher, filters: RowFilters,
               seed: int, hits: np.ndarray | None = None,
               ) -> tuple[list[tuple[str, str, int, str]], Counter]:
    """Stage one chunk: ``texts`` are its text columns by field (pyarrow arrays, for the
    vectorised prefilter), ``rows_at(indices)`` gives the full rows (field -> value) of the
    prefilter's hits. Returns ``(photo_id, class_name, rank, photo JSON)`` per class of each
    kept row (the photo is a flickr.photos.search result, see :func:`to_photo`) and counts.
    ``hits``: the rows' :meth:`ClassMatcher.prefilter_hits`, when already computed."""
    counts: Counter[str] = Counter(rows=num_rows)
    if not texts:
        raise ValueError("no text column to match classes in")
    if hits is None:
        hits = matcher.prefilter_hits(list(texts.values()))
    # Per-column masks of the few hit rows: the exact rule runs on the fields the prefilter
    # flagged only (descriptions are long), as when each column was prefiltered in full;
    # a row no single column flags (a phrase across two columns) is not fetched at all.
    masks = matcher.prefilter([c.take(hits) for c in texts.values()])
    kept = np.logical_or.reduce(masks) if masks else np.zeros(0, bool)
    masks = dict(zip(texts, (m[kept] for m in masks), strict=True))
    hits = hits[kept].tolist()
    staged: list[tuple[str, str, int, str]] = []
    for k, row in enumerate(rows_at(hits) if hits else ()):  # take([]) fails: no type
        names = matcher.match(*(row.get(f) for f, mask in masks.items() if mask[k]))
        if not names:
            continue  # a prefilter hit the exact rule rejects (e.g. "cat%C3%A9")
        try:
            reason = drop_reason(row, filters)
            text = "" if reason else json.dumps(photo := to_photo(row, matcher), sort_keys=True)
        except _BAD_CELL:  # an infinite date, an absurd accuracy, bytes where text belongs
            counts["malformed"] += 1
            continue
        counts["matched"] += 1
        if reason:
            counts[f"dropped_{reason}"] += 1
            continue
        counts["candidates"] += 1
        rank = rank_key(photo["id"], seed)
        staged += [(photo["id"], name, rank, text) for name in names]
    return staged, counts


def staged_record(photo_json: str, mammal_class: MammalClass | str,
                  image_hosts: tuple[str, ...] = (), any_host: bool = False) -> PhotoRecord:
    """The catalog record of a staged match (as search.py makes it from an API result); a URL
    off the allowed image hosts makes it DOWNLOAD_FAILED ``url_refused``."""
    if isinstance(mammal_class, str):
        mammal_class = get_class(mammal_class)
    photo = json.loads(photo_json)
    record = photo_to_record(photo, mammal_class)
    url = str(photo.get("url_z") or "")
    if url and record.error != BAD_ID and not url_allowed(url, image_hosts, any_host):
        record = record.evolve(status=Status.DOWNLOAD_FAILED, error=URL_REFUSED)
    return record

