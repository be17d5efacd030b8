"""Import the authors' release into a build folder: shards, index, manifest, stats, report.

docs/reference.md §1; DATASET.md, "The authors' release vs a fresh build". Two streaming passes
over the archive (``tarfile`` mode ``r|*``: nothing is extracted, nothing seeks): the first
reads and checks the layout (:mod:`.layout`), so a wrong archive stops before anything is
written; the second decodes, checks and re-encodes each photo exactly as a build's download
stage does (:func:`flickr_mammal.imaging.process_image`: upright, at most ``max_side`` px, sRGB,
no metadata, SHA-256 of the stored bytes), writes it to ``images/`` and commits its record to
the build catalog in batches. A photo whose record is committed is never read again, so after
``kill -9`` the same command goes on where it stopped and no photo is doubled (a photo written
but not yet committed is written again, atomically, to the same name). Shards, index and
manifest are then written from the catalog by the build's own writers, and the paper's
partitions become columns (:data:`PAPER_COLUMNS`).

What the release does not carry stays null: coordinates, owner, title, licence, dates, and so
continent, subcontinent and country (``geo_status`` "not_in_release").
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd
from tqdm import tqdm

from flickr_mammal.build import BuildConfig, _exclusive, finish
from flickr_mammal.build_guard import BuildFolderError, catalog_errors
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import get_class
from flickr_mammal.clean.config import CleanConfig
from flickr_mammal.imaging import ImageError, process_image
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.regions import UNKNOWN
from flickr_mammal.release.layout import (
    IMAGES,
    SCHEMES,
    ReleaseImage,
    ReleaseLayout,
    read_layout,
    stream_members,
)
from flickr_mammal.shards import INDEX_NAME, write_shards
from flickr_mammal.splits import TRAIN, VAL
from skewtools.io import atomic_write_bytes, atomic_write_with

log = logging.getLogger(__name__)

NOT_IN_RELEASE: Final = "not_in_release"  # geo_status: the release has no coordinates
RELEASE_PATH: Final = "release_path"      # record.extra key: the photo's path in the release
PAPER_COLUMNS: Final = ("paper_label", *(c for s in SCHEMES
                                         for c in (f"paper_{s}", f"paper_{s}_split")))
_META: Final = "release"


@dataclass(frozen=True)
class ImportConfig:
    """Where from, where to, and how the photos are stored (a build's defaults)."""

    archive: Path
    out: Path
    max_side: int = 300
    quality: int = 90
    workers: int = field(default_factory=lambda: min(8, os.cpu_count() or 1))
    commit_every: int = 256
    shard_samples: int = 10_000
    shard_bytes: int = 1_000_000_000
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "archive", Path(self.archive))
        object.__setattr__(self, "out", Path(self.out))
        bad = [name for name, ok in {
            "max_side": self.max_side >= 1, "quality": 1 <= self.quality <= 95,
            "workers": self.workers >= 1, "commit_every": self.commit_every >= 1,
            "shard_samples": self.shard_samples >= 1, "shard_bytes": self.shard_bytes >= 1,
        }.items() if not ok]
        if bad:
            raise ValueError(f"invalid import option(s) {', '.join(bad)}: max_side, workers, "
                             "commit_every and shard sizes >= 1, quality in 1..95")
        if not self.archive.is_file():
            raise ValueError(f"{self.archive} is not a file: give the release's "
                             "geo_animal.tar.gz")


@dataclass(frozen=True)
class ImportSummary:
    out: Path
    images: int          # photos in the archive
    imported: int        # photos processed by this run (the others were done before)
    kept: int            # photos in the shards
    failed: dict[str, int]
    duplicate_ids: int   # photo ids found under several paths (the first one is imported)
    shards: int
    seconds: float

    def lines(self) -> list[str]:
        failed = ", ".join(f"{k} {v}" for k, v in sorted(self.failed.items())) or "none"
        return [f"imported {self.imported} of {self.images} images into {self.out} in "
                f"{self.seconds:.1f}s ({self.imported / max(self.seconds, 1e-9):.0f} images/s)",
                f"kept images: {self.kept} in {self.shards} shards; failed checks: {failed}; "
                f"photo ids under several paths: {self.duplicate_ids}",
                f"manifest: {Layout.at(self.out).manifest}"]


def _build_config(config: ImportConfig) -> BuildConfig:
    # What finish() and the shard writer read: the output folder and the shard options.
    return BuildConfig(out=config.out, stages=("shard",), clean=CleanConfig("none"),
                       shard_samples=config.shard_samples, shard_bytes=config.shard_bytes,
                       group_by="none", progress=config.progress)


def _identity(config: ImportConfig, layout: ReleaseLayout) -> dict[str, Any]:
    return {"archive": config.archive.name, "bytes": config.archive.stat().st_size,
            "images": len(layout.images), "list_files": layout.list_files,
            "max_side": config.max_side, "quality": config.quality}


def _check_identity(catalog: Catalog, identity: dict[str, Any], out: Path) -> None:
    stored = catalog.get_meta(_META)
    if stored is None and catalog.count():
        raise BuildFolderError(f"{out} holds a build, not an imported release: import into "
                               "a new --out folder")
    if stored is not None and stored != identity:
        differ = sorted(k for k in identity if stored.get(k) != identity[k])
        raise BuildFolderError(f"{out} holds an import of another archive or with other "
                               f"options ({', '.join(differ)}); re-run with the same ones, or "
                               "import into a new --out folder")
    catalog.set_meta(_META, identity)


def _first_paths(layout: ReleaseLayout) -> dict[str, str]:
    """Path -> photo id of the path imported for each photo id (its first in the archive)."""
    first: dict[str, str] = {}
    taken: set[str] = set()
    for path, image in layout.images.items():  # dicts keep the archive's order
        if image.photo_id not in taken:
            taken.add(image.photo_id)
            first[path] = image.photo_id
    return first


def _record(image: ReleaseImage) -> PhotoRecord:
    return PhotoRecord(
        photo_id=image.photo_id, owner="", class_name=image.class_name,
        label=get_class(image.class_name).label, latitude=float("nan"),
        longitude=float("nan"), country=UNKNOWN, subcontinent=UNKNOWN, continent=UNKNOWN,
        geo_status=NOT_IN_RELEASE, extra={RELEASE_PATH: image.path})


def _process(item: tuple[ReleaseImage, bytes], config: ImportConfig,
             layout: Layout) -> PhotoRecord:
    image, data = item
    record = _record(image)
    try:
        out = process_image(data, max_side=config.max_side, quality=config.quality)
    except ImageError as exc:
        return record.evolve(status=Status.DOWNLOAD_FAILED, error=exc.reason)
    atomic_write_bytes(layout.image_path(image.photo_id), out.jpeg, parents=True)
    return record.evolve(status=Status.KEPT, sha256=out.sha256, width=out.width,
                         height=out.height)


def _todo(config: ImportConfig, layout: ReleaseLayout,
          done: set[str]) -> Iterator[tuple[ReleaseImage, bytes]]:
    """The second streaming pass: (image, bytes) of each photo not yet in the catalog."""
    wanted = _first_paths(layout)
    prefix = f"{IMAGES}/"
    for tar, member, name in stream_members(config.archive):
        path = name[len(prefix):] if name.startswith(prefix) else ""
        if wanted.get(path) is None or wanted[path] in done:
            continue  # unread: the stream skips its data
        handle = tar.extractfile(member)
        yield layout.images[path], handle.read() if handle else b""


def _batched(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _import_images(config: ImportConfig, layout: ReleaseLayout, catalog: Catalog) -> int:
    done = {pid for (pid,) in catalog.connection.execute("SELECT photo_id FROM records")}
    todo = len(_first_paths(layout)) - len(done)
    out = Layout.at(config.out)
    bar = tqdm(desc="import", total=todo, unit="img", disable=None if config.progress else True)
    imported = 0
    with ThreadPoolExecutor(config.workers) as pool:
        for batch in _batched(_todo(config, layout, done), config.commit_every):
            records = list(pool.map(lambda item: _process(item, config, out), batch))
            imported += catalog.update(records)  # one transaction: the resume point
            bar.update(len(records))
    bar.close()
    return imported


def paper_columns(layout: ReleaseLayout, paths: pd.Series) -> pd.DataFrame:
    """The paper's partitions of the photos at ``paths``: ``paper_label`` (the list files'
    label id), and per scheme the part index (``paper_<scheme>``, null where no list of that
    scheme names the photo) and its side (``paper_<scheme>_split``, "train" / "val")."""
    out = pd.DataFrame(index=paths.index)
    classes = paths.map(lambda p: layout.images[p].class_name)
    out["paper_label"] = classes.map(layout.paper_labels).astype("Int64")
    for scheme in SCHEMES:
        parts = layout.parts.get(scheme, {})
        found = paths.map(parts.get)
        out[f"paper_{scheme}"] = found.map(lambda v: v[1] if v else None).astype("Int64")
        out[f"paper_{scheme}_split"] = found.map(lambda v: v[0] if v else None).astype("string")
    return out


def _side(layout: ReleaseLayout, path: str) -> str:
    """The shards' split: the side of the first scheme that lists the photo, else train."""
    for scheme in SCHEMES:
        found = layout.parts.get(scheme, {}).get(path)
        if found:
            return found[0]
    return TRAIN


def _write_shards(config: ImportConfig, layout: ReleaseLayout,
                  catalog: Catalog) -> pd.DataFrame:
    folder = Layout.at(config.out)
    kept = [r.evolve(split=_side(layout, r.extra[RELEASE_PATH]))
            for r in catalog.records(Status.KEPT)]
    index = pd.concat([
        write_shards(kept, lambda r: folder.image_path(r.photo_id).read_bytes(), folder.shards,
                     split=split, max_samples=config.shard_samples,
                     max_bytes=config.shard_bytes, progress=config.progress)
        for split in (TRAIN, VAL)], ignore_index=True)
    path_of = {r.key: r.extra[RELEASE_PATH] for r in kept}
    index = pd.concat([index, paper_columns(layout, index["key"].map(path_of))], axis=1)
    atomic_write_with(folder.shards / INDEX_NAME, lambda tmp: index.to_parquet(tmp, index=False))
    shard_of = dict(zip(index["key"], index["shard"], strict=True))
    catalog.update(r.evolve(shard=shard_of.get(r.key, "")) for r in kept)
    return index


def _add_paper_columns(config: ImportConfig, layout: ReleaseLayout, catalog: Catalog) -> None:
    path = Layout.at(config.out).manifest
    manifest = pd.read_parquet(path)
    paths = {r.photo_id: r.extra[RELEASE_PATH] for r in catalog.records(Status.KEPT)}
    extra = paper_columns(layout, manifest["photo_id"].astype(str).map(paths))
    manifest = pd.concat([manifest, extra], axis=1)
    atomic_write_with(path, lambda tmp: manifest.to_parquet(tmp, index=False))


def import_release(config: ImportConfig, layout: ReleaseLayout | None = None) -> ImportSummary:
    """Import (or resume importing) the release at ``config.archive`` into ``config.out``."""
    start = time.monotonic()
    layout = layout or read_layout(config.archive)  # raises before anything is written
    build_config = _build_config(config)
    with _exclusive(config.out), catalog_errors(build_config.layout.catalog), \
            Catalog.open(build_config.layout.catalog) as catalog:
        _check_identity(catalog, _identity(config, layout), config.out)
        imported = _import_images(config, layout, catalog)
        index = _write_shards(config, layout, catalog)
        stats = finish(build_config, catalog, index)
        _add_paper_columns(config, layout, catalog)
    failed = stats["status"].get(str(Status.DOWNLOAD_FAILED), {})
    return ImportSummary(
        out=config.out, images=len(layout.images), imported=imported, kept=len(index),
        failed=dict(failed), duplicate_ids=len(layout.duplicate_ids),
        shards=int(index["shard"].nunique()), seconds=time.monotonic() - start)
