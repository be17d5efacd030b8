"""Small real-JPEG records with known geography, shared by the shard and reader tests."""

from __future__ import annotations

import io
from collections.abc import Collection
from pathlib import Path

from PIL import Image

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.records import PhotoRecord, Status

GPS_IFD = 0x8825

# photo_id, label, country_code, country, subcontinent, continent
GEO_ROWS = [
    ("1001", 23, "KE", "Kenya", "Eastern Africa", "Africa"),
    ("1002", 41, "KE", "Kenya", "Eastern Africa", "Africa"),
    ("1003", 41, "TZ", "Tanzania", "Eastern Africa", "Africa"),
    ("1004", 23, "ZA", "South Africa", "Southern Africa", "Africa"),
    ("1005", 8, "ZA", "South Africa", "Southern Africa", "Africa"),
    ("1006", 12, "FR", "France", "Western Europe", "Europe"),
    ("1007", 12, "FR", "France", "Western Europe", "Europe"),
    ("1008", 13, "GB", "United Kingdom", "Northern Europe", "Europe"),
    ("1009", 20, "AU", "Australia", "Australia and New Zealand", "Oceania"),
    ("1010", 21, "AU", "Australia", "Australia and New Zealand", "Oceania"),
    ("1011", 39, "", "unknown", "unknown", "unknown"),
]


def make_jpeg(width: int, height: int = 12, color: tuple[int, int, int] = (200, 80, 40),
              gps: bool = True) -> bytes:
    """A JPEG; with ``gps`` it carries EXIF with a GPS block, a camera make and a comment."""
    image = Image.new("RGB", (width, height), color)
    exif = Image.Exif()
    if gps:
        exif[0x010F] = "SecretCam"                       # Make
        exif.get_ifd(GPS_IFD).update({1: "N", 2: (1.0, 17.0, 9.0), 3: "E", 4: (36.0, 49.0, 1.0)})
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90, exif=exif.tobytes(), comment=b"private note")
    return buf.getvalue()


def geo_records() -> list[PhotoRecord]:
    """Eleven kept records of mammal classes (as a build names them): 5 in Africa (2
    sub-regions), 3 Europe, 2 Oceania, 1 unknown."""
    return [
        PhotoRecord(photo_id=pid, owner="owner", class_name=CLASS_NAMES[label], label=label,
                    latitude=-1.23456 + i, longitude=36.78912 - i, status=Status.KEPT,
                    country_code=cc, country=country, subcontinent=sub, continent=cont,
                    geo_status="ok" if cont != "unknown" else "at_sea", title=f"photo {pid}")
        for i, (pid, label, cc, country, sub, cont) in enumerate(GEO_ROWS)
    ]


def width_of(record: PhotoRecord) -> int:
    """Each record's image has its own width, so a decoded image tells which record it was."""
    return 16 + int(record.photo_id) - 1000


def read_image(record: PhotoRecord) -> bytes:
    return make_jpeg(width_of(record), color=(10 * record.label % 256, 100, 50))


def write_geo_shards(root: str | Path, *, val: Collection[str] = (),
                     group_by: str | None = "continent") -> Path:
    """:func:`geo_records` as shards by the dataset's own writer into ``root``: the photo ids in
    ``val`` form the val split, the others train."""
    from flickr_mammal.shards import write_shards

    records = [r.evolve(split="val" if r.photo_id in val else "train") for r in geo_records()]
    for split in ("train", "val") if val else ("train",):
        write_shards(records, read_image, root, split=split, group_by=group_by, progress=False)
    return Path(root)
