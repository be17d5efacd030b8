"""Train/val split, stratified per class and fixed by the photo id (docs/reference.md §1).

Within each class, photos are ranked by a keyed hash of (seed, photo_id); the lowest
``round(val_fraction * n)`` go to "val". So a photo's split depends only on the seed, its id and
its class's size, never on input order; adding photos to a class moves few others.
Python's ``round`` is used (half to even), so 2.5 -> 2 and 3.5 -> 4.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Final

from flickr_mammal.records import PhotoRecord

log = logging.getLogger(__name__)

TRAIN: Final = "train"
VAL: Final = "val"


def split_rank(photo_id: str, seed: int) -> bytes:
    """The sort key of a photo within its class: a seeded BLAKE2b digest of the photo id."""
    return hashlib.blake2b(photo_id.encode("utf-8"), digest_size=8,
                           key=str(seed).encode("ascii")).digest()


def assign_splits(records: Sequence[PhotoRecord], *, val_fraction: float = 0.05,
                  seed: int = 0) -> list[PhotoRecord]:
    """Records (in input order) with ``split`` set to "train" or "val", stratified by label."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1) (got {val_fraction}); e.g. 0.05")
    ids = [r.photo_id for r in records]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate photo ids: deduplicate records before splitting")
    by_label: dict[int, list[str]] = defaultdict(list)
    for r in records:
        by_label[r.label].append(r.photo_id)
    val_ids: set[str] = set()
    for label in sorted(by_label):
        members = sorted(by_label[label], key=lambda pid: (split_rank(pid, seed), pid))
        val_ids.update(members[: round(val_fraction * len(members))])
    log.info("split %d records: %d val, %d train", len(records), len(val_ids),
             len(records) - len(val_ids))
    return [r.evolve(split=VAL if r.photo_id in val_ids else TRAIN) for r in records]
