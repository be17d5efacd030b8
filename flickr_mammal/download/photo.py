"""One photo: fetch, shrink, write, and the record that says how it went; or adopt the image a
killed run wrote but never recorded (docs/reference.md section 1: images stored at 300 px)."""

from __future__ import annotations

import hashlib
import io
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from PIL import Image

from flickr_mammal.download.config import DownloadConfig
from flickr_mammal.fetch import Fetcher, FetchError
from flickr_mammal.imaging import ImageError, process_image
from flickr_mammal.layout import Layout
from flickr_mammal.records import BAD_ID, PhotoRecord, Status
from skewtools.io import atomic_write_bytes

logger = logging.getLogger(__name__)


def download_one(
    record: PhotoRecord, layout: Layout, config: DownloadConfig, fetcher: Fetcher,
    decode_slot: AbstractContextManager[Any] | None = None,
) -> PhotoRecord:
    """Fetch, shrink and write one photo; the returned record says how it went.

    ``decode_slot`` (e.g. a semaphore) is held while the image is decoded and re-encoded.
    """
    try:
        path = layout.image_path(record.photo_id)
    except ValueError:  # an id that is not plain digits never becomes a path (search checks too)
        logger.warning("photo id %r is not a Flickr id: recorded as %s", record.photo_id[:40],
                       BAD_ID)
        return record.evolve(status=Status.DOWNLOAD_FAILED, error=BAD_ID, sha256="", width=0,
                             height=0)
    if config.adopt:
        adopted = adopt_written(record, path, config, decode_slot)
        if adopted is not None:
            return adopted
    try:
        if not record.url:
            raise FetchError("no_url")
        record = record.evolve(attempts=record.attempts + 1)
        data = fetcher.fetch(record.url)
        with decode_slot or nullcontext():
            image = process_image(data, max_side=config.max_side, quality=config.quality,
                                  max_pixels=config.max_pixels)
    except (FetchError, ImageError) as exc:
        return _failed(record, path, exc.reason)
    except Exception as exc:  # an exotic failure deep in the HTTP stack is still one photo's
        logger.warning("unexpected error downloading %s", record.url, exc_info=True)
        return _failed(record, path, f"unexpected_{type(exc).__name__}")
    atomic_write_bytes(path, image.jpeg, parents=True)  # the first photo makes its folder
    return record.evolve(status=Status.DOWNLOADED, error="", sha256=image.sha256,
                         width=image.width, height=image.height)


def adopt_written(record: PhotoRecord, path: Path, config: DownloadConfig,
                  decode_slot: AbstractContextManager[Any] | None = None) -> PhotoRecord | None:
    """The DOWNLOADED record of an image a killed run wrote but never recorded, or None.

    Images reach their final name only by ``os.replace`` of a complete temp file (temps are
    never looked at: :func:`remove_partial_writes`), so a final file is whole unless the
    machine itself crashed; it is adopted only if it decodes fully as what this stage writes
    (an RGB JPEG no larger than ``max_side``), else it is fetched again.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        with decode_slot or nullcontext(), Image.open(io.BytesIO(data), formats=("JPEG",)) as im:
            im.load()  # the whole file: a cut-off one raises here
            ok = im.mode == "RGB" and max(im.size) <= config.max_side and not im.info.get("exif")
            size = im.size
    except Exception:  # any decode failure: not ours to keep
        ok = False
    if not ok:
        logger.info("image %s left by an earlier run does not check out: fetching again", path)
        return None
    return record.evolve(status=Status.DOWNLOADED, error="", width=size[0], height=size[1],
                         sha256=hashlib.sha256(data).hexdigest())


def _failed(record: PhotoRecord, path: Path, reason: str) -> PhotoRecord:
    # A file left by an earlier, interrupted run must not outlive a failed record.
    path.unlink(missing_ok=True)
    return record.evolve(status=Status.DOWNLOAD_FAILED, error=reason, sha256="", width=0,
                         height=0)
