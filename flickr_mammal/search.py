"""Search one mammal class on Flickr past the 4,000-result cap (docs/reference.md §2).

Any one query returns at most its first 4,000 results, so the upload-date window is halved
recursively until each slice reports ``total <= 4000``; each slice is then paged through in full
and yielded as one :class:`SliceResult`, which the catalog commits in one transaction. Slices are
visited newest half first and the order is deterministic, so a resumed run meets the same slices
and skips those in ``done_slices``.

Upload dates are inclusive at both ends on Flickr, so the halves of ``[lo, hi]`` are
``[mid + 1, hi]`` and ``[lo, mid]``. Slicing is bounded (:class:`SearchConfig`), since a lying
``total`` (10^9 for one photo) would otherwise halve down to 1-second slices, thousands of calls:
a slice is never split below ``min_slice_seconds``; one that still exceeds the cap gives its
first 4,000 results and is stored with error ``over_cap``. A class stops after
``max_calls_per_class`` searches; the slices it did not reach are stored as not done, with
error ``call_budget``, and a re-run continues them. A malformed answer (retried by the client)
makes its slice a failed one (error ``bad_answer``, not done: a re-run retries it). Each of
these logs a warning that the class is not fully enumerated; stats.json counts them.

Sort: ``date-posted-asc``. Inside a fixed window it is as stable as any sort Flickr offers, and if
photos enter the window while we page (a window ending "now"), they land on the last page instead
of shifting every page under our feet as with ``date-posted-desc``. Photo ids are deduplicated
within a class anyway, so repeats from a moving result set cost nothing but a call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from flickr_mammal._util import int_or
from flickr_mammal.classes import MammalClass
from flickr_mammal.flickr_api import FlickrBadAnswer
from flickr_mammal.image_hosts import strip_credentials
from flickr_mammal.records import BAD_ID, PhotoRecord, Status, is_valid_photo_id

log = logging.getLogger(__name__)

RESULT_CAP = 4000
PER_PAGE = 250  # the most a geo query returns per page
SORT = "date-posted-asc"
EXTRAS = "geo,license,owner_name,date_upload,date_taken,url_z,url_c,url_m"
# Best URL first: z is 640 px on the long side (room for the 300 px output), c is 800 px (more
# bytes, same result), m is only 240 px (upscaling never happens, so a smaller image), kept last.
URL_SIZES: tuple[str, ...] = ("z", "c", "m")
MAX_ACCURACY = 16  # Flickr's geo accuracy: 1 (world) .. 16 (street)
# Why a slice is not fully enumerated (SliceResult.error; counted in stats.json).
OVER_CAP = "over_cap"          # over 4,000 results in a slice too narrow to split
BAD_ANSWER = "bad_answer"      # Flickr's answer stayed malformed after the client's retries
CALL_BUDGET = "call_budget"    # the class reached max_calls_per_class first


class SearchClient(Protocol):
    def search(self, **params: Any) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SearchConfig:
    """Bounds on how hard one class is searched (module docstring)."""

    min_slice_seconds: int = 3600     # never split an upload-date slice narrower than this
    max_calls_per_class: int = 5000   # searches per class and run (Flickr allows 3,600 an hour)

    def __post_init__(self) -> None:
        if self.min_slice_seconds < 1:
            raise ValueError(f"SearchConfig.min_slice_seconds must be >= 1 second (default "
                             f"3600), got {self.min_slice_seconds}")
        if self.max_calls_per_class < 1:
            raise ValueError(f"SearchConfig.max_calls_per_class must be >= 1 (default 5000), "
                             f"got {self.max_calls_per_class}")


class _BudgetSpent(Exception):
    """The class used up ``max_calls_per_class``."""


class _Searcher:
    """One class's searches: the fixed parameters, and a count of calls against the budget."""

    def __init__(self, client: SearchClient, base: Mapping[str, Any], limit: int) -> None:
        self.client, self.base, self.limit, self.made = client, base, limit, 0

    def page(self, lo: int, hi: int, page: int) -> dict[str, Any]:
        if self.made >= self.limit:
            raise _BudgetSpent
        self.made += 1
        return self.client.search(**self.base, min_upload_date=lo, max_upload_date=hi, page=page)


@dataclass(frozen=True)
class SliceResult:
    """One finished upload-date slice of one class: commit its records and the slice together.

    ``complete`` is False for the last slice of a class stopped early at ``per_class``, and for
    a slice that failed (``error`` ``bad_answer`` or ``call_budget``). ``error`` is "" or why the
    slice is not fully enumerated (``over_cap`` slices are complete: nothing more can be had).
    """

    class_name: str
    min_date: int
    max_date: int
    total: int
    records: tuple[PhotoRecord, ...]
    complete: bool = True
    error: str = ""

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.class_name, self.min_date, self.max_date)


def search_class(
    client: SearchClient,
    mammal_class: MammalClass,
    *,
    licenses: Iterable[int],
    min_upload_date: int,
    max_upload_date: int,
    per_class: int,
    done_slices: Iterable[tuple[str, int, int]] = frozenset(),
    found_before: int = 0,
    config: SearchConfig | None = None,
) -> Iterator[SliceResult]:
    """Yield the finished slices of ``mammal_class`` until the window is exhausted or
    ``per_class`` candidates were found (``found_before`` counts those already in the catalog
    from ``done_slices``, which are skipped without a call)."""
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if min_upload_date > max_upload_date:
        raise ValueError(
            f"min_upload_date {min_upload_date} is after max_upload_date {max_upload_date}"
        )
    license_ids = sorted({int(x) for x in licenses})
    if not license_ids or license_ids[0] < 0:
        raise ValueError(f"licenses must be non-empty Flickr license ids >= 0, got {license_ids}")
    base = {
        "text": mammal_class.search_text, "has_geo": 1, "media": "photos", "content_type": 1,
        "license": ",".join(map(str, license_ids)), "sort": SORT, "per_page": PER_PAGE,
        "extras": EXTRAS,
    }
    config = config or SearchConfig()
    done = {(lo, hi) for name, lo, hi in done_slices if name == mammal_class.name}
    searcher = _Searcher(client, base, config.max_calls_per_class)
    seen: set[str] = set()
    wanted = per_class - found_before
    stack = [(int(min_upload_date), int(max_upload_date))]
    while stack and wanted > 0:
        lo, hi = stack.pop()
        if (lo, hi) in done:
            continue
        if lo < hi and any(lo <= a and b <= hi for a, b in done):
            stack += _halves(lo, hi)  # split on an earlier run: no need to probe it again
            continue
        try:
            first = searcher.page(lo, hi, 1)
        except _BudgetSpent:
            stack.append((lo, hi))
            break
        except FlickrBadAnswer as exc:
            log.warning("%s [%d, %d]: %s; the slice is recorded as failed and the class is "
                        "not fully enumerated (a re-run retries it)", mammal_class.name, lo, hi,
                        exc)
            yield SliceResult(mammal_class.name, lo, hi, 0, (), False, BAD_ANSWER)
            continue
        if first["total"] > RESULT_CAP and hi - lo + 1 >= 2 * config.min_slice_seconds:
            stack += _halves(lo, hi)
            continue
        result = _collect(searcher, mammal_class, lo, hi, first, seen, wanted)
        wanted -= len(result.records)
        yield result
        if result.error == CALL_BUDGET:
            break
    left = [(lo, hi) for lo, hi in stack if (lo, hi) not in done]
    if wanted > 0 and left and searcher.made >= searcher.limit:
        log.warning("%s: stopped after %d searches (max_calls_per_class); %d slices not "
                    "searched, so the class is not fully enumerated (a re-run continues)",
                    mammal_class.name, searcher.made, len(left))
        for lo, hi in reversed(left):
            yield SliceResult(mammal_class.name, lo, hi, 0, (), False, CALL_BUDGET)
    new = max(per_class - found_before, 0) - max(wanted, 0)
    log.info("%s: %d new candidates (%d found before)", mammal_class.name, new, found_before)


def _halves(lo: int, hi: int) -> list[tuple[int, int]]:
    """The two halves of [lo, hi], in stack order: the newer half is popped first."""
    mid = (lo + hi) // 2
    return [(lo, mid), (mid + 1, hi)]


def _collect(
    searcher: _Searcher,
    mammal_class: MammalClass,
    lo: int,
    hi: int,
    first: dict[str, Any],
    seen: set[str],
    wanted: int,
) -> SliceResult:
    """Page through one slice (page 1 is ``first``), keeping photos new to this class.

    A malformed page or a spent budget ends the slice early: what was found is kept and the
    slice is returned as not complete, with the error saying why."""
    total = first["total"]
    error = ""
    if total > RESULT_CAP:
        error = OVER_CAP
        log.warning(
            "%s: %d photos in [%d, %d], a slice not split further (min_slice_seconds); only "
            "the first %d can be fetched, so the class is not fully enumerated",
            mammal_class.name, total, lo, hi, RESULT_CAP,
        )
    pages = min(first.get("pages", 1), math.ceil(RESULT_CAP / PER_PAGE))
    records: list[PhotoRecord] = []
    answer, page = first, 1
    while True:
        for photo in answer["photo"]:
            pid = str(photo.get("id", ""))
            if pid and pid not in seen:
                seen.add(pid)
                records.append(photo_to_record(photo, mammal_class))
        more = page < pages and bool(answer["photo"])
        if len(records) >= wanted or not more:
            break
        page += 1
        try:
            answer = searcher.page(lo, hi, page)
        except (FlickrBadAnswer, _BudgetSpent) as exc:
            error = BAD_ANSWER if isinstance(exc, FlickrBadAnswer) else CALL_BUDGET
            log.warning("%s [%d, %d]: page %d failed (%s); the slice is kept as not done and "
                        "the class is not fully enumerated (a re-run continues)",
                        mammal_class.name, lo, hi, page, error)
            return SliceResult(mammal_class.name, lo, hi, total, tuple(records[:wanted]), False,
                               error)
    complete = len(records) <= wanted and not more  # else cut short at per_class
    log.debug("%s [%d, %d]: total %d, %d new", mammal_class.name, lo, hi, total, len(records))
    return SliceResult(mammal_class.name, lo, hi, total, tuple(records[:wanted]), complete,
                       error)


def photo_to_record(photo: Mapping[str, Any], mammal_class: MammalClass) -> PhotoRecord:
    """A search-result photo (with EXTRAS) as a record. A photo whose id is not plain digits, or
    with no usable URL or geo fields, becomes a DOWNLOAD_FAILED record (error ``bad_id`` /
    ``no_url`` / ``bad_geo``) so it counts in stats; a bad id never reaches a path."""
    photo_id = str(photo["id"])
    lat, lon = _float(photo.get("latitude")), _float(photo.get("longitude"))
    url, width, height = best_url(photo)
    error = ""
    if not is_valid_photo_id(photo_id):
        log.warning("%s: photo id %r from the API is not a Flickr id: recorded as %s",
                    mammal_class.name, photo_id[:40], BAD_ID)
        error = BAD_ID
    elif not url:
        error = "no_url"
    elif not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):  # False for NaN too
        error = "bad_geo"
    return PhotoRecord(
        photo_id=photo_id,
        owner=str(photo.get("owner", "")),
        class_name=mammal_class.name,
        label=mammal_class.label,
        latitude=lat,
        longitude=lon,
        accuracy=_bounded(photo.get("accuracy"), 0, MAX_ACCURACY, 0),
        license=_bounded(photo.get("license"), 0, 1 << 31, -1),
        title=str(photo.get("title") or ""),
        date_upload=_bounded(photo.get("dateupload"), 0, 1 << 62, 0),
        date_taken=str(photo.get("datetaken") or ""),
        url=url,
        width=width,
        height=height,
        status=Status.DOWNLOAD_FAILED if error else Status.SEARCHED,
        error=error,
        extra={"ownername": str(photo["ownername"])} if photo.get("ownername") else {},
    )


def best_url(photo: Mapping[str, Any]) -> tuple[str, int, int]:
    """(url, width, height) of the first size in URL_SIZES present; ("", 0, 0) if none."""
    for size in URL_SIZES:
        url = photo.get(f"url_{size}")
        if isinstance(url, str) and url.startswith(("http://", "https://")):
            width, height = photo.get(f"width_{size}"), photo.get(f"height_{size}")
            # user:password@ never reaches the catalog, the manifest or a shard (image_hosts.py)
            return strip_credentials(url), int_or(width, 0), int_or(height, 0)
    return "", 0, 0


def _bounded(value: Any, lo: int, hi: int, default: int) -> int:
    """An integer field of an answer or a dump row: ``default`` unless a number in [lo, hi]
    (an absurd value must not reach SQLite's 64-bit INTEGER, nor stall every later run)."""
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if lo <= number <= hi else default


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
