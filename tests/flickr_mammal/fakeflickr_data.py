"""Synthetic Flickr photos and images for the fake Flickr server (tests only).

Photos are deterministic given the seed: geo points near real cities on five continents (each
class leans to one continent, like the real data's skew), upload dates spread over a window, and
images that are real-photo crops (scikit-image's sample photos) so decoders see natural JPEGs.
Each photo id gives distinct image bytes, so duplicate detection finds only planted duplicates.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

# Served with a fault instead of a good JPEG (see image_answer).
IMAGE_FAULTS: tuple[str, ...] = ("empty", "truncated", "html", "bomb", "404", "500")
# Faults in the search answer itself: no url_* at all, or geo fields that are not coordinates.
RECORD_FAULTS: tuple[str, ...] = ("no_url", "bad_geo")

# A few (lat, lon) points on land per continent (city centres), jittered by a few km.
CONTINENT_POINTS: dict[str, tuple[tuple[float, float], ...]] = {
    "Africa": ((-1.29, 36.82), (-33.92, 18.42), (6.52, 3.38), (30.04, 31.24), (-17.83, 31.05)),
    "Americas": ((40.71, -74.0), (-23.55, -46.63), (19.43, -99.13), (49.28, -123.12),
                 (-34.6, -58.38)),
    "Asia": ((35.68, 139.69), (28.61, 77.21), (39.9, 116.4), (13.75, 100.5), (1.35, 103.82)),
    "Europe": ((48.86, 2.35), (51.51, -0.13), (52.52, 13.4), (41.9, 12.5), (59.33, 18.07)),
    "Oceania": ((-33.87, 151.21), (-37.81, 144.96), (-36.85, 174.76), (-27.47, 153.03),
                (-31.95, 115.86)),
}
_CONTINENTS = tuple(CONTINENT_POINTS)
_SOURCES = ("chelsea", "astronaut", "coffee", "rocket", "camera", "horse")


def generate_photos(
    classes: Iterable[str],
    per_class: int,
    *,
    seed: int = 0,
    min_upload_date: int = 1_300_000_000,
    max_upload_date: int = 1_600_000_000,
    licenses: Sequence[int] = (1, 2, 4, 5, 7, 9, 10),
    skew: float = 0.6,
    image_side: int = 320,
    faults: Sequence[str] = (),
    first_id: int = 10_000_000_000,
) -> dict[str, list[dict[str, Any]]]:
    """``per_class`` Flickr-style photo dicts per class, ready for ``FakeFlickr``.

    Class number i puts a ``skew`` share of its photos on continent i % 5, the rest evenly on all.
    The first ``len(faults)`` photos of each class get those faults, in order (each one of
    IMAGE_FAULTS or RECORD_FAULTS).
    """
    unknown = set(faults) - set(IMAGE_FAULTS) - set(RECORD_FAULTS)
    if unknown:
        raise ValueError(f"unknown faults {sorted(unknown)}; known: {IMAGE_FAULTS + RECORD_FAULTS}")
    rng = np.random.default_rng(seed)
    out: dict[str, list[dict[str, Any]]] = {}
    next_id = first_id
    for ci, name in enumerate(classes):
        photos = []
        for j in range(per_class):
            photo = _photo(rng, str(next_id), ci, min_upload_date, max_upload_date,
                           licenses, skew, image_side)
            if j < len(faults):
                _apply_fault(photo, faults[j])
            photos.append(photo)
            next_id += 1
        out[name] = photos
    return out


def _photo(
    rng: np.random.Generator, pid: str, ci: int, lo: int, hi: int,
    licenses: Sequence[int], skew: float, side: int,
) -> dict[str, Any]:
    continent = ci % len(_CONTINENTS) if rng.random() < skew else rng.integers(len(_CONTINENTS))
    points = CONTINENT_POINTS[_CONTINENTS[continent]]
    lat, lon = points[rng.integers(len(points))]
    taken = int(rng.integers(lo - 86_400 * 30, lo + 1))
    aspect = (1.0, 0.75, 4 / 3)[rng.integers(3)]
    width = side if aspect <= 1 else round(side / aspect)
    return {
        "id": pid,
        "owner": f"{rng.integers(10**7, 10**8)}@N0{rng.integers(10)}",
        "ownername": f"user{rng.integers(1000)}",
        "title": f"IMG_{pid[-4:]}",
        "latitude": round(lat + rng.uniform(-0.05, 0.05), 6),
        "longitude": round(lon + rng.uniform(-0.05, 0.05), 6),
        "accuracy": str(rng.integers(11, 17)),
        "license": str(licenses[rng.integers(len(licenses))]),
        "dateupload": str(rng.integers(lo, hi + 1)),
        "datetaken": _mysql_time(taken),
        "width": width,
        "height": round(width * aspect),
    }


def _apply_fault(photo: dict[str, Any], fault: str) -> None:
    if fault == "no_url":
        photo["sizes"] = ()
    elif fault == "bad_geo":
        photo["latitude"], photo["longitude"] = "not-a-number", "200.5"
    else:
        photo["image"] = fault


def _mysql_time(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


@functools.cache
def _source(name: str) -> Image.Image:
    import skimage.data

    img = Image.fromarray(getattr(skimage.data, name)())
    return img.convert("RGB")


@functools.lru_cache(maxsize=4096)
def synthetic_jpeg(photo_id: str, width: int = 320, height: int = 240, quality: int = 85) -> bytes:
    """A distinct, deterministic real-photo JPEG of ``width`` x ``height`` for ``photo_id``."""
    rng = np.random.default_rng(zlib.crc32(photo_id.encode()))
    src = _source(_SOURCES[rng.integers(len(_SOURCES))])
    sw, sh = src.size
    scale = min(sw / width, sh / height) * rng.uniform(0.5, 1.0)
    cw, ch = max(1, int(width * scale)), max(1, int(height * scale))
    x, y = int(rng.integers(0, sw - cw + 1)), int(rng.integers(0, sh - ch + 1))
    img = src.crop((x, y, x + cw, y + ch)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@functools.cache
def bomb_png(side: int = 30_000) -> bytes:
    """A ~100 KB 1-bit PNG that decodes to side x side pixels (900 M at the default)."""
    row_bytes = 1 + (side + 7) // 8  # filter byte + packed bits
    comp = zlib.compressobj(9)
    rows = b"\x00" * row_bytes * 1000
    data = b"".join(comp.compress(rows) for _ in range(side // 1000))
    data += comp.compress(b"\x00" * row_bytes * (side % 1000)) + comp.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF
        )

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def image_answer(photo: Mapping[str, Any]) -> tuple[int, bytes, str, dict[str, str]]:
    """(HTTP status, body, content type, headers) serving ``photo``'s ``image`` spec."""
    spec = photo.get("image", "ok")
    width, height = int(photo.get("width", 320)), int(photo.get("height", 240))
    if isinstance(spec, bytes):
        return 200, spec, "image/jpeg", {}
    ok = synthetic_jpeg(str(photo["id"]), width, height) if spec in ("ok", "truncated") else b""
    answers: dict[str, tuple[int, bytes, str, dict[str, str]]] = {
        "ok": (200, ok, "image/jpeg", {}),
        "empty": (200, b"", "image/jpeg", {}),
        "truncated": (200, ok[: len(ok) // 2], "image/jpeg", {}),
        "html": (200, b"<!DOCTYPE html><html><body>photo unavailable</body></html>",
                 "text/html", {}),
        "404": (404, b"<html>Not Found</html>", "text/html", {}),
        "500": (500, b"<html>Internal Server Error</html>", "text/html", {}),
    }
    if spec == "bomb":
        return 200, bomb_png(), "image/png", {}
    return answers[spec]


def check_image_spec(spec: Any) -> None:
    """Refuse an ``image`` value the fake cannot serve, when photos are added (not mid-request)."""
    known = isinstance(spec, bytes) or spec in ("ok", *IMAGE_FAULTS) or (
        isinstance(spec, str) and spec.startswith("same_as:"))
    if not known:
        raise ValueError(f"unknown image spec {spec!r}; use bytes, 'ok', 'same_as:<id>' or one "
                         f"of {IMAGE_FAULTS}")
