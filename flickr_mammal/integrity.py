"""What readers check cheaply about a shard set, and the errors they raise.

Shards are written atomically (shards.py), but a copy, a full disk or an edit can still damage
them afterwards. Reading damaged data silently trains on the wrong set, so:

- at open time, :func:`index_problems` checks the index (``shards.parquet``) on its own and
  against the shard files (one ``stat`` per shard): every key once, keys matching photo ids,
  every shard name a file inside the shard folder (``skewtools.loaders.shard_path``: no
  ``..``, no absolute path, no symlink leading out, a regular file), and each shard long
  enough for the samples it lists (a shard cut short at a member boundary is shorter than
  that); :func:`manifest_count_problems` compares the index's rows per split with the
  build's manifest, when the folder holds one (an index that lost a row);
- while reading, :func:`checked_samples` counts each shard's samples against the index (a shard
  that ends early raises, naming the shard), compares each sample's ``.cls`` label and its
  ``.json`` label, split, shard and geography (continent, subcontinent, country) with its index
  row (an edited row would serve a sample under another label, split or partition), and each
  JPEG with its recorded length and sha256 before it is decoded (decoders render most corrupt
  JPEG data as garbage, silently); :class:`ShardTotals` compares the number of samples in each
  shard with the index (a sample whose row was deleted from the index).

``python -m pipelines.verify_dataset`` (flickr_mammal/verify.py) checks everything, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final, NamedTuple

import pandas as pd

from flickr_mammal.regions import UNKNOWN
from skewtools.loaders.shard_files import ShardPathError, shard_path

REQUIRED: Final = ("key", "photo_id", "shard", "split", "label", "jpg_bytes")
GEO: Final = ("continent", "subcontinent", "country")
_BLOCK: Final = tarfile.BLOCKSIZE
HINT: Final = "run python -m pipelines.verify_dataset on the folder; rebuild with the shard stage"


class DatasetIntegrityError(RuntimeError):
    """A shard or the shard index differs from what the build wrote."""


def _blocks(n: pd.Series) -> pd.Series:
    return -(-n // _BLOCK) * _BLOCK


def min_shard_bytes(jpg_bytes: pd.Series) -> int:
    """The smallest tar that can hold these samples: per sample three headers, the JPEG and at
    least one block each for ``.cls`` and ``.json``; then the two end-of-archive blocks."""
    return int((5 * _BLOCK + _blocks(jpg_bytes.astype("int64"))).sum()) + 2 * _BLOCK


def _examples(values: pd.Series | list[Any], limit: int = 3) -> str:
    values = list(values)
    more = f" and {len(values) - limit} more" if len(values) > limit else ""
    return ", ".join(str(v) for v in values[:limit]) + more


def index_problems(index: pd.DataFrame, shard_dir: Path | None = None) -> list[str]:
    """What is wrong with an index (and, given ``shard_dir``, with its shards' sizes)."""
    missing = [c for c in REQUIRED if c not in index.columns]
    if missing:
        return [f"index lacks the columns {missing}"]
    problems = []
    dup = index["key"][index["key"].duplicated()]
    if len(dup):
        problems.append(f"index lists {len(dup)} key(s) more than once: {_examples(dup.unique())}")
    wrong_key = index["key"] != "fm" + index["photo_id"].astype(str)
    if wrong_key.any():
        problems.append(f"index keys do not match their photo ids: "
                        f"{_examples(index['key'][wrong_key])}")
    if (index["jpg_bytes"] <= 0).any():
        problems.append("index lists samples with no image bytes (jpg_bytes <= 0)")
    if shard_dir is not None:
        problems += _shard_size_problems(index, shard_dir)
    return problems


def _shard_size_problems(index: pd.DataFrame, shard_dir: Path) -> list[str]:
    problems = []
    for shard, rows in index.groupby("shard", sort=True):
        try:
            path = shard_path(shard_dir, shard)
        except ShardPathError as exc:
            problems.append(f"{exc} (listed in the index)")
            continue
        size, need = path.stat().st_size, min_shard_bytes(rows["jpg_bytes"])
        if size < need:
            problems.append(f"shard {shard} is {size} bytes, too short for the {len(rows)} "
                            f"samples the index lists (at least {need}): truncated")
    return problems


def manifest_count_problems(index: pd.DataFrame, manifest_path: Path | None) -> list[str]:
    """The index's rows per split against the manifest's sharded rows (three columns read)."""
    if manifest_path is None or not manifest_path.is_file():
        return []
    manifest = pd.read_parquet(manifest_path, columns=["photo_id", "shard", "split"])
    manifest = manifest[manifest["shard"].notna() & (manifest["shard"].astype(str) != "")]
    problems = []
    for split in sorted(set(manifest["split"].astype(str)) | set(index["split"].astype(str))):
        m = manifest["photo_id"][manifest["split"].astype(str) == split].astype(str)
        i = index["photo_id"][index["split"].astype(str) == split].astype(str)
        if len(m) != len(i):
            lost = sorted(set(m) - set(i))
            problems.append(f"the index lists {len(i)} samples of split {split}, the manifest "
                            f"{len(m)}" + (f" (not in the index: photo {_examples(lost)})"
                                           if lost else ""))
    return problems


def check_index(index: pd.DataFrame, shard_dir: Path, source: Path,
                manifest_path: Path | None = None) -> None:
    """Raise :class:`DatasetIntegrityError` naming the first problems of ``index`` (and of its
    row count against the manifest at ``manifest_path``, when given)."""
    problems = index_problems(index, shard_dir) + manifest_count_problems(index, manifest_path)
    if problems:
        raise DatasetIntegrityError(f"{source}: {'; '.join(problems[:3])}"
                                    + (f" (+{len(problems) - 3} more)" if len(problems) > 3
                                       else "") + f"; {HINT}")


class Facts(NamedTuple):
    """What a sample's own members must agree with: its index row."""

    shard: str
    label: int
    split: str
    geo: tuple[str, ...]       # GEO, "" for no value


def _text(value: Any) -> str:
    return "" if value is None or pd.isna(value) or value in ("", UNKNOWN) else str(value)


def row_facts(rows: pd.DataFrame) -> dict[str, Facts]:
    """Key -> :class:`Facts` of each index row."""
    geo = [rows[c].map(_text) if c in rows.columns else pd.Series("", index=rows.index)
           for c in GEO]
    return {key: Facts(str(shard), int(label), str(split), tuple(g))
            for key, shard, label, split, *g in zip(rows["key"], rows["shard"], rows["label"],
                                                    rows["split"], *geo, strict=True)}


def sample_problem(sample: Mapping[str, Any], facts: Facts) -> str | None:
    """How a raw sample (``cls``, ``json`` members) differs from its index row, or None."""
    try:
        label = int(sample["cls"])
        meta = json.loads(sample["json"])
    except (KeyError, ValueError, TypeError):
        return "its .cls or .json member is missing or unreadable"
    if label != facts.label:
        return f"label {label} in its .cls member, {facts.label} in the index"
    if not isinstance(meta, dict):
        return "its .json member is not an object"
    found = (meta.get("label"), meta.get("split"), meta.get("shard"))
    want = (facts.label, facts.split, facts.shard)
    for name, got, expected in zip(("label", "split", "shard"), found, want, strict=True):
        if got != expected:
            return f"{name} {got} in its .json member, {expected} in the index"
    for name, expected in zip(GEO, facts.geo, strict=True):
        got = _text(meta.get(name))
        if got != expected:
            return f"{name} {got or '(none)'} in its .json member, {expected or '(none)'} in " \
                   "the index"
    return None


class ShardTotals:
    """``on_shard_end`` hook: a shard must hold exactly the samples its index rows list
    (every split and partition). Picklable, for DataLoader workers."""

    def __init__(self, totals: Mapping[str, int]) -> None:
        self.totals = dict(totals)

    def __call__(self, url: str, keys: int) -> None:
        want = self.totals.get(Path(url).name, 0)
        if keys > want:
            raise DatasetIntegrityError(
                f"shard {Path(url).name} holds {keys} samples, its index lists {want}: a "
                f"sample's index row is missing (deleted or edited); {HINT}")


def checked_samples(src: Iterator[dict[str, Any]], urls: list[str], expected: Mapping[str, int],
                    digests: Mapping[str, tuple[int, str]] | None,
                    facts: Mapping[str, Facts] | None = None) -> Iterator[dict[str, Any]]:
    """Pass raw samples (in shard order) through, raising on a shard that ends early or holds
    more samples than the index says, on a sample whose members disagree with its index row
    (``facts``), and on a JPEG whose length or sha256 is not recorded."""
    seen: Counter[str] = Counter()
    current = None
    for sample in src:
        url, key = sample["__url__"], sample["__key__"]
        if url != current:  # shards come one after another here: the last one is complete
            if current is not None:
                _check_complete(current, seen[current], expected)
            current = url
        if facts is not None and key in facts:
            problem = sample_problem(sample, facts[key])
            if problem is None and Path(url).name != facts[key].shard:
                problem = f"found in shard {Path(url).name}, the index says {facts[key].shard}"
            if problem is not None:
                raise DatasetIntegrityError(f"sample {key} in shard {Path(url).name}: "
                                            f"{problem}; {HINT}")
        if digests is not None and key in digests:
            size, sha = digests[key]
            data = sample.get("jpg")
            if data is None or len(data) != size or hashlib.sha256(data).hexdigest() != sha:
                raise DatasetIntegrityError(
                    f"sample {key} in shard {Path(url).name}: its JPEG is missing or differs "
                    f"from the index (length/sha256): corrupt; {HINT}")
        seen[url] += 1
        if seen[url] > expected.get(Path(url).name, 0):
            raise DatasetIntegrityError(f"shard {Path(url).name} holds more samples than the "
                                        f"{expected.get(Path(url).name, 0)} its index lists "
                                        f"(sample {key} repeated or unlisted); {HINT}")
        yield sample
    for url in urls:
        _check_complete(url, seen[url], expected)


def _check_complete(url: str, seen: int, expected: Mapping[str, int]) -> None:
    want = expected.get(Path(url).name, 0)
    if seen != want:
        raise DatasetIntegrityError(
            f"shard {Path(url).name} ended after {seen} of the {want} samples its index lists: "
            f"truncated or damaged; {HINT}")
