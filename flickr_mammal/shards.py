"""Byte-reproducible WebDataset shards and their index (docs/reference.md §1: released image set).

Each sample is three tar members: ``KEY.cls`` (label id, ASCII), ``KEY.jpg`` (the JPEG with every
metadata segment removed: EXIF incl. GPS never leaves the build) and ``KEY.json`` (the record's
PUBLIC_FIELDS, coordinates rounded to ``coord_decimals``, sorted keys). Shards are written with the
stdlib ``tarfile`` and explicit headers (mtime 0, uid/gid 0, no user names, mode 0444), samples in
(group, label, photo id) order, so the same records give the same bytes on every run. A shard is
written under a temporary name and renamed into place, so a crash never leaves half a shard.

The index (``shards.parquet`` in the shard folder, one row per sample) tells a reader which
shards hold a geographic group without opening any tar, and what each sample's JPEG must be
(``jpg_bytes``, ``jpg_sha256``), so readers and verify_dataset can detect damaged shards.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import re
import tarfile
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import pandas as pd
from tqdm import tqdm

from flickr_mammal.records import PUBLIC_FIELDS, PhotoRecord
from flickr_mammal.regions import UNKNOWN
from skewtools.io import AtomicFile, atomic_write_with

log = logging.getLogger(__name__)

INDEX_NAME: Final = "shards.parquet"
INDEX_COLUMNS: Final = (
    "key", "photo_id", "shard", "split", "label", "class_name", "country_code", "country",
    "subcontinent", "continent", "geo_status", "jpg_bytes", "jpg_sha256",
)
_BLOCK: Final = tarfile.BLOCKSIZE
# JPEG markers whose segments are metadata: APP1 (EXIF, XMP), APP3-APP13 (vendor data, IPTC),
# APP15 and COM. Kept: APP0 (JFIF), APP2 (ICC colour profile), APP14 (Adobe colour transform).
_METADATA_MARKERS: Final = frozenset({0xE1, *range(0xE3, 0xEE), 0xEF, 0xFE})
_STANDALONE_MARKERS: Final = frozenset({0x01, *range(0xD0, 0xD8)})


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The JPEG without metadata segments, losslessly (no re-encoding); anything after EOI
    (e.g. a second, EXIF-carrying image of a multi-picture file) is dropped too.

    Hand-rolled because the libraries at hand either re-encode (Pillow) or only drop APP1.
    """
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG: no SOI marker at the start")
    out, pos, in_scan = [data[:2]], 2, False
    while pos + 1 < len(data):
        if data[pos] != 0xFF or (in_scan and data[pos + 1] in (0x00, *range(0xD0, 0xD8))):
            if not in_scan:
                raise ValueError(f"corrupt JPEG: expected a marker at byte {pos}")
            nxt = data.find(b"\xff", pos + 1)   # skip entropy-coded bytes up to the next 0xFF
            out.append(data[pos: nxt if nxt >= 0 else len(data)])
            pos = nxt if nxt >= 0 else len(data)
            continue
        marker = data[pos + 1]
        if marker == 0xFF:                      # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:                      # EOI: done
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker in _STANDALONE_MARKERS:
            out.append(data[pos:pos + 2])
            pos += 2
            continue
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if end > len(data) or end < pos + 4:
            raise ValueError(f"corrupt JPEG: segment 0xFF{marker:02X} at byte {pos} overruns")
        if marker not in _METADATA_MARKERS:
            out.append(data[pos:end])
        in_scan = marker == 0xDA                # SOS: entropy-coded data follows its header
        pos = end
    raise ValueError("truncated JPEG: no EOI marker")


def group_slug(value: str) -> str:
    """A file-name-safe group name: "Australia and New Zealand" -> "australia-and-new-zealand",
    "Réunion" -> "reunion"."""
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug or UNKNOWN


def _public_json(record: PhotoRecord, coord_decimals: int) -> bytes:
    fields: dict[str, Any] = {name: getattr(record, name) for name in PUBLIC_FIELDS}
    for name in ("latitude", "longitude"):
        fields[name] = round(fields[name], coord_decimals)
    fields = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
              for k, v in fields.items()}  # NaN is not JSON (non-finite coordinates included)
    text = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _members(record: PhotoRecord, jpeg: bytes, coord_decimals: int) -> list[tuple[str, bytes]]:
    key = record.key
    return [
        (f"{key}.cls", str(record.label).encode("ascii")),
        (f"{key}.jpg", jpeg),
        (f"{key}.json", _public_json(record, coord_decimals)),
    ]


def _tar_size(members: Iterable[tuple[str, bytes]]) -> int:
    return sum(_BLOCK + -(-len(data) // _BLOCK) * _BLOCK for _, data in members)


class _ShardFile:
    """One shard being written under a temporary name; ``close`` renames it into place."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # fsync before the rename: after a power loss a shard is whole or absent
        self._file = AtomicFile(path, fsync=True)
        self._tar = tarfile.open(fileobj=self._file.file, mode="w", format=tarfile.USTAR_FORMAT)
        self.samples = 0
        self.bytes = 2 * _BLOCK  # end-of-archive blocks

    def add(self, members: Sequence[tuple[str, bytes]]) -> None:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o444
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            self._tar.addfile(info, io.BytesIO(data))
        self.samples += 1
        self.bytes += _tar_size(members)

    def close(self) -> None:
        self._tar.close()
        self._file.commit()

    def abort(self) -> None:
        self._tar.close()
        self._file.abort()


def _mixed(key: str) -> bytes:
    return hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"shardord").digest()


def _group_of(record: PhotoRecord, group_by: str | None) -> str:
    if group_by is None:
        return ""
    return str(getattr(record, group_by)) or UNKNOWN


def _shard_name(split: str, group: str, number: int, group_by: str | None) -> str:
    middle = f"-{group_slug(group)}" if group_by is not None else ""
    return f"{split}{middle}-{number:06d}.tar"


def _index_row(record: PhotoRecord, shard: str, split: str, jpeg: bytes) -> dict[str, Any]:
    row = {name: getattr(record, name) for name in INDEX_COLUMNS if hasattr(record, name)}
    # The digest of the bytes in the shard lets readers detect a damaged image before decoding
    # it (a decoder renders most corrupt JPEG data as garbage pixels, without an error).
    row.update(key=record.key, shard=shard, split=split, jpg_bytes=len(jpeg),
               jpg_sha256=hashlib.sha256(jpeg).hexdigest())
    return row


def _select(records: Iterable[PhotoRecord], split: str) -> list[PhotoRecord]:
    chosen = [r for r in records if r.split in ("", split)]
    keys = [r.key for r in chosen]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate photo ids: deduplicate records before writing shards")
    return chosen


def _validate(split: str, group_by: str | None, max_samples: int, max_bytes: int,
              coord_decimals: int) -> None:
    if not re.fullmatch(r"[a-z0-9_]+", split):
        raise ValueError(f"split must be lower-case letters/digits/_ (got {split!r}), e.g. 'train'")
    if group_by is not None and group_by not in PhotoRecord.__dataclass_fields__:
        raise ValueError(f"group_by must be a PhotoRecord field such as 'continent' (got "
                         f"{group_by!r})")
    if max_samples < 1 or max_bytes < 1:
        raise ValueError(f"max_samples and max_bytes must be >= 1 (got {max_samples}, {max_bytes})")
    if not 0 <= coord_decimals <= 6:
        raise ValueError(f"coord_decimals must be in 0..6 (got {coord_decimals}); default 2")


class _SplitWriter:
    """Feeds sorted records into shards, opening a new one per group and at the size limits."""

    def __init__(self, out: Path, split: str, group_by: str | None, max_samples: int,
                 max_bytes: int, coord_decimals: int) -> None:
        self.out, self.split, self.group_by = out, split, group_by
        self.max_samples, self.max_bytes = max_samples, max_bytes
        self.coord_decimals = coord_decimals
        self.rows: list[dict[str, Any]] = []
        self.skipped: dict[str, str] = {}
        self._shards_per_slug: dict[str, int] = {}
        self._shard: _ShardFile | None = None
        self._group: str | None = None

    def _members(self, record: PhotoRecord, name: str, jpeg: bytes) -> list[tuple[str, bytes]]:
        return _members(record.evolve(split=self.split, shard=name), jpeg, self.coord_decimals)

    def _open(self, group: str) -> _ShardFile:
        self.close()
        # Numbered per slug, so two groups with the same slug never overwrite each other.
        slug = group_slug(group)
        number = self._shards_per_slug.get(slug, 0)
        self._shards_per_slug[slug] = number + 1
        name = _shard_name(self.split, group, number, self.group_by)
        self._shard, self._group = _ShardFile(self.out / name), group
        return self._shard

    def add(self, record: PhotoRecord, read_image: Callable[[PhotoRecord], bytes]) -> None:
        try:
            jpeg = strip_jpeg_metadata(read_image(record))
        except (OSError, ValueError) as exc:
            self.skipped[record.photo_id] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping photo %s: %s", record.photo_id, self.skipped[record.photo_id])
            return
        group = _group_of(record, self.group_by)
        shard = self._shard
        if shard is None or group != self._group:
            shard = self._open(group)
        members = self._members(record, shard.path.name, jpeg)
        if shard.samples and (shard.samples >= self.max_samples
                              or shard.bytes + _tar_size(members) > self.max_bytes):
            shard = self._open(group)
            members = self._members(record, shard.path.name, jpeg)
        shard.add(members)
        self.rows.append(_index_row(record, shard.path.name, self.split, jpeg))

    def close(self) -> None:
        if self._shard is not None:
            self._shard.close()
            self._shard = None

    def abort(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None


def write_shards(records: Sequence[PhotoRecord], read_image: Callable[[PhotoRecord], bytes],
                 out_dir: str | Path, *, split: str, group_by: str | None = None,
                 max_samples: int = 10_000, max_bytes: int = 1_000_000_000,
                 coord_decimals: int = 2, progress: bool = True) -> pd.DataFrame:
    """Write one split's shards into ``out_dir``; return its index rows (one per sample).

    Records whose ``split`` is another split are skipped; an empty ``split`` counts as this one.
    With ``group_by`` (a record field, e.g. "continent") each group gets its own shards,
    ``{split}-{group-slug}-{NNNNNN}.tar``; else ``{split}-{NNNNNN}.tar``. A shard closes at
    ``max_samples`` samples or before passing ``max_bytes`` (headers counted, not the final
    tar record padding of up to 10 KiB). One call writes the whole split:
    older ``{split}-*.tar`` files in ``out_dir`` are removed and the split's rows in
    ``out_dir/shards.parquet`` replaced. A record whose image cannot be read or is not a valid
    JPEG is skipped and logged (listed in the result's ``attrs["skipped"]``). ``progress=False``
    hides the progress bar.
    """
    _validate(split, group_by, max_samples, max_bytes, coord_decimals)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Within a group, a hash of the key fixes the order and mixes the labels: a reader's
    # shuffle buffer (1,000 samples) cannot undo label-sorted shards of 10,000.
    chosen = sorted(_select(records, split),
                    key=lambda r: (_group_of(r, group_by), _mixed(r.key), r.key))
    writer = _SplitWriter(out, split, group_by, max_samples, max_bytes, coord_decimals)
    try:
        # disable=None: a bar only on a terminal; progress=False: never.
        bar = tqdm(chosen, desc=f"shards {split}", unit="img", disable=None if progress else True)
        for record in bar:
            writer.add(record, read_image)
        writer.close()
    finally:
        writer.abort()
    rows, skipped = writer.rows, writer.skipped
    index = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
    _remove_stale(out, split, set(index["shard"]))
    _update_index_file(out / INDEX_NAME, split, index)
    index.attrs["skipped"] = skipped
    log.info("split %s: %d samples in %d shards, %d skipped", split, len(index),
             index["shard"].nunique(), len(skipped))
    return index


def _remove_stale(out: Path, split: str, keep: set[str]) -> None:
    for path in sorted(out.glob(f"{split}-*.tar")):
        if path.name not in keep:
            log.info("removing stale shard %s", path)
            path.unlink()


def _update_index_file(path: Path, split: str, index: pd.DataFrame) -> None:
    """Replace ``split``'s rows of the index file, keeping other splits; atomic rename."""
    merged = index
    if path.exists():
        old = pd.read_parquet(path)
        old = old[old["split"] != split]
        if len(old):
            merged = pd.concat([old, index], ignore_index=True)
    # Splits in name order, each in write order, so the file does not depend on call order.
    merged = merged.sort_values("split", kind="stable", ignore_index=True)
    atomic_write_with(path, lambda tmp: merged.to_parquet(tmp, index=False))


def read_index(shard_dir: str | Path) -> pd.DataFrame:
    """The shard index written by :func:`write_shards` in ``shard_dir``."""
    path = Path(shard_dir) / INDEX_NAME
    if not path.exists():
        raise FileNotFoundError(f"no shard index at {path}; write shards with write_shards()")
    return pd.read_parquet(path)
