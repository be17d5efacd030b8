"""Checks a build makes on its output folder before any work: never mix two kinds of data.

A build folder holds one dataset. Running the build again with options that change what the
data *is* (classes, licences, upload dates, image size, cleaning classifier) would add records
of another kind to the ones already there and rewrite the recorded config, so it is refused with
one line naming each differing option; the class file counts by its content (a sha256 of its
bytes), not its path, so an edited synonym or exclusion is another kind of data and a copy of
the file elsewhere is not. Shard-layout options (split, shard size, grouping,
coordinate rounding) only shape the shards, which the shard stage rewrites from the catalog on
every run: they may change when the shard stage runs, and are refused otherwise. Options that
change no data (workers, device, batch size, rate limit, stages, per-class cap) never count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, Final

from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import DEFAULT_FILE
from flickr_mammal.records import WITH_IMAGE, Status
from flickr_mammal.shards import INDEX_NAME

log = logging.getLogger(__name__)

# (command-line flag, or the BuildConfig field where there is none; path in to_meta())
SEARCH_OPTIONS: Final = (("--classes", ("classes",)), ("--licenses", ("licenses",)),
                         ("--min-upload-date", ("min_upload_date",)))
IMAGE_OPTIONS: Final = (("--image-side", ("download", "max_side")),)
CLEAN_OPTIONS: Final = (("--classifier", ("clean", "classifier")), ("--top-k", ("clean", "top_k")))
SHARD_OPTIONS: Final = (
    ("--val-fraction", ("val_fraction",)), ("split_seed", ("split_seed",)),
    ("--shard-samples", ("shard_samples",)), ("shard_bytes", ("shard_bytes",)),
    ("--group-by", ("group_by",)), ("--coord-decimals", ("coord_decimals",)),
)
SHARD_META: Final = "shard_options"  # catalog meta: the shard options the shards were written with
CLASSES_DIGEST: Final = "classes_file_sha256"  # BuildConfig.to_meta()'s key for the content hash


class BuildFolderError(ValueError):
    """The output folder cannot take this build (a one-line message that says what to do)."""


def check_output_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, lies under a file, or cannot be written."""
    if out.exists() and not out.is_dir():
        raise BuildFolderError(f"--out {out} is a file, not a folder; choose a folder path")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BuildFolderError(f"--out {out} lies under the file {existing}; choose a folder "
                               "path that is not inside a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BuildFolderError(f"--out {out}: {existing} is not writable; choose a writable "
                               "folder or fix its permissions")


def folder_error(out: Path, exc: OSError) -> BuildFolderError:
    """The one-line error for an output folder the system refused (read-only, permissions)."""
    return BuildFolderError(f"--out {out} cannot be written ({exc.strerror or exc}); choose a "
                            "writable folder")


@contextmanager
def catalog_errors(path: Path) -> Iterator[None]:
    """Turn SQLite's corruption errors (from any query of a build) into one line naming the
    file; other database errors (locked, constraint) are not corruption and pass through."""
    try:
        yield
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:
            raise
        raise catalog_error(path, exc) from exc


def catalog_error(path: Path, exc: sqlite3.DatabaseError) -> BuildFolderError:
    return BuildFolderError(
        f"{path} is not a readable build catalog ({exc}); restore it from a backup, or move it "
        "away and run the build again to start a new catalog (searches and downloads are redone)")


def classes_file_digest(path: str | Path | None) -> str:
    """The sha256 of a class file's bytes (``None``: the shipped mammals file): what the build
    guard compares, so two files count as the same class list exactly when their bytes agree."""
    if path is None:
        data = (resources.files("flickr_mammal") / DEFAULT_FILE).read_bytes()
    else:
        data = Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest()


def _classes_file_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The class file's content changed (a build recorded before the digest was kept: no check;
    its class names still are)."""
    before, after = old.get(CLASSES_DIGEST), new.get(CLASSES_DIGEST)
    if before is None or before == after:
        return []
    return [f"--classes-file {_shown_file(old)} (now {_shown_file(new)})"]


def _shown_file(meta: dict[str, Any]) -> str:
    return f"{meta.get('classes_file') or DEFAULT_FILE} (sha256 {meta[CLASSES_DIGEST][:12]})"


def _get(meta: dict[str, Any], path: tuple[str, ...]) -> Any:
    for part in path:
        if not isinstance(meta, dict) or part not in meta:
            return None
        meta = meta[part]
    return meta


def _show(flag: str, value: Any) -> str:
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    if flag.endswith("-date") and isinstance(value, int):
        day = datetime.fromtimestamp(value, UTC)
        return day.strftime("%Y-%m-%d") if day.timestamp() % 86_400 == 0 else str(value)
    return str(value)


def _differences(old: dict[str, Any], new: dict[str, Any],
                 options: Sequence[tuple[str, tuple[str, ...]]]) -> list[str]:
    found = []
    for flag, path in options:
        before, after = _get(old, path), _get(new, path)
        if before is not None and _normal(before) != _normal(after):
            found.append(f"{flag} {_show(flag, before)} (now {_show(flag, after)})")
    return found


def _normal(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _source(meta: dict[str, Any]) -> str:
    dump = meta.get("metadata")
    return f"{dump.get('path')}" if isinstance(dump, dict) else "none (the Flickr API)"


def _source_change(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Searching the API into a folder built from a dump, or the reverse, would merge two
    sources' photos; another dump file is the dump scan's own check (DumpScanMismatch)."""
    if isinstance(old.get("metadata"), dict) == isinstance(new.get("metadata"), dict):
        return []
    return [f"--metadata {_source(old)} (now {_source(new)})"]


def check_same_data(catalog: Catalog, new: dict[str, Any], stages: Sequence[str],
                    shard_dir: Path) -> None:
    """Raise :class:`BuildFolderError` when ``new`` (BuildConfig.to_meta()) would mix data with
    what the folder already holds; shard options may differ when the shard stage runs."""
    old = catalog.get_meta("config")
    if not old:
        return
    differ = []
    if catalog.count():
        differ += _differences(old, new, SEARCH_OPTIONS) + _classes_file_change(old, new)
        if "search" in stages:
            differ += _source_change(old, new)
        window = catalog.get_meta("search_window")
        if window and new.get("max_upload_date") not in (None, window[1]):
            differ.append(f"--max-upload-date {_show('-date', window[1])} "
                          f"(now {_show('-date', new['max_upload_date'])})")
    if catalog.count(WITH_IMAGE):
        differ += _differences(old, new, IMAGE_OPTIONS)
    if catalog.count((Status.KEPT, Status.REJECTED, Status.CLEAN_FAILED)):
        clean = CLEAN_OPTIONS if _get(old, ("clean", "classifier")) != "none" else CLEAN_OPTIONS[:1]
        differ += _differences(old, new, clean)
    if differ:
        raise BuildFolderError(
            f"{catalog.path.parent} holds data built with other options: {', '.join(differ)}; "
            "rerun with the recorded options, or build into a new --out folder")
    if (shard_dir / INDEX_NAME).exists():
        shard_differ = _differences(catalog.get_meta(SHARD_META) or old, new, SHARD_OPTIONS)
        if shard_differ and "shard" not in stages:
            raise BuildFolderError(
                f"the shards in {catalog.path.parent} were written with other options: "
                f"{', '.join(shard_differ)}; add shard to --stages to re-shard with the new "
                "options, or rerun with the recorded ones")
        if shard_differ:
            log.info("re-sharding: %s", ", ".join(shard_differ))


def shard_options(meta: dict[str, Any]) -> dict[str, Any]:
    """The shard options of a config (BuildConfig.to_meta()), stored after a shard stage."""
    return {path[0]: meta[path[0]] for _, path in SHARD_OPTIONS}
