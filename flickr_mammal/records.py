"""The typed record of one photo, carried through every stage (search -> ... -> shard).

Failures are data: each stage writes its outcome to ``status`` (and ``error`` when it failed)
instead of raising, so one bad photo never stops a batch (img2dataset's habit).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Flickr photo ids are decimal digits (about 11 today); 20 leaves room and keeps file and tar
# member names short. Only ASCII digits: str.isdigit() and \d also accept other scripts' digits.
_PHOTO_ID = re.compile(r"[0-9]{1,20}")
BAD_ID = "bad_id"  # the failure reason of a record whose photo id is not a plain Flickr id


def is_valid_photo_id(photo_id: object) -> bool:
    """True for a plain Flickr photo id (1-20 ASCII digits): safe as a file and tar member name.

    Ids come from the API's answer and end up in paths (images/NN/ID.jpg) and shard member
    names, so ``/tmp/x``, ``../../evil``, a NUL or a 300-character id must never pass.
    """
    return isinstance(photo_id, str) and _PHOTO_ID.fullmatch(photo_id) is not None


class Status(StrEnum):
    """Where a record stands. Terminal failures keep the stage that failed in the name."""

    SEARCHED = "searched"            # found by search, not yet downloaded
    AMBIGUOUS = "ambiguous"          # returned for two or more classes: kept for neither
    DOWNLOADED = "downloaded"
    DOWNLOAD_FAILED = "download_failed"
    DUPLICATE = "duplicate"          # same image bytes (sha256) as an earlier record
    KEPT = "kept"                    # passed cleaning (or cleaning skipped)
    REJECTED = "rejected"            # cleaning: no class index in the top-k
    CLEAN_FAILED = "clean_failed"


# Records that hold a downloaded image: the download's successes, whatever came after them.
WITH_IMAGE: tuple[Status, ...] = (Status.DOWNLOADED, Status.DUPLICATE, Status.KEPT,
                                  Status.REJECTED, Status.CLEAN_FAILED)


@dataclass(frozen=True)
class PhotoRecord:
    """One Flickr photo and what every stage learned about it."""

    # --- from search (flickr.photos.search extras) ---
    photo_id: str
    owner: str
    class_name: str
    label: int
    latitude: float
    longitude: float
    accuracy: int = 0                # Flickr geo accuracy 1 (world) .. 16 (street)
    license: int = -1
    title: str = ""
    date_upload: int = 0             # unix seconds
    date_taken: str = ""
    url: str = ""
    # --- stage outcomes ---
    status: Status = Status.SEARCHED
    error: str = ""
    sha256: str = ""
    width: int = 0
    height: int = 0
    clean_score: float = float("nan")  # classifier probability mass on the class's ImageNet indices
    clean_rank: int = -1             # best rank of any of the class's indices (0 = top-1)
    country_code: str = ""
    country: str = ""
    subcontinent: str = ""
    continent: str = ""
    geo_status: str = ""             # "ok", or why the point was not placed (kept, never guessed)
    split: str = ""                  # "train" / "val"
    shard: str = ""
    attempts: int = 0                # download attempts by builds (bounds retries of transient
    #                                  failures across builds: download.TRANSIENT_REASONS)
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> str:
        """Stable sample key in shards: derived from the photo id alone."""
        return f"fm{self.photo_id}"

    def evolve(self, **changes: Any) -> PhotoRecord:
        """A copy with some fields changed (records are immutable)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field (about 10x slower, and the
        # catalog converts every record it writes); only ``extra`` is mutable, and a flat one
        # (the usual: the owner's name) needs no deep copy.
        d = {name: getattr(self, name) for name in _ALL_FIELDS}
        flat = all(isinstance(v, str | int | float | None) for v in self.extra.values())
        d["extra"] = dict(self.extra) if flat else copy.deepcopy(self.extra)
        d["status"] = str(self.status)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhotoRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if "status" in kwargs:
            kwargs["status"] = Status(kwargs["status"])
        return cls(**kwargs)


_ALL_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PhotoRecord))
RECORD_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(PhotoRecord) if f.name != "extra"
)

# Fields that leave the build (shards' KEY.json, manifest.parquet). Owner ids and titles are
# public on Flickr and are needed for attribution; exact coordinates are rounded on export.
PUBLIC_FIELDS: tuple[str, ...] = (
    "photo_id", "owner", "class_name", "label", "latitude", "longitude", "accuracy", "license",
    "title", "date_upload", "date_taken", "url", "sha256", "width", "height", "clean_score",
    "clean_rank", "country_code", "country", "subcontinent", "continent", "split", "shard",
)
