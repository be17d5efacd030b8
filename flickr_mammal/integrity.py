"""What readers check cheaply about a shard set, and the errors they raise.

Shards are written atomically (shards.py), but a copy, a full disk or an edit can still damage
them afterwards. Reading damaged data silently trains on the wrong set, so:

- at open time, :func:`index_problems` checks the index (``shards.parquet``) on its own and
  against the shard files' sizes (one ``stat`` per shard): every key once, keys matching photo
  ids, and each shard long enough for the samples it lists (a
  shard cut short at a member boundary is shorter than that);
- while reading, :func:`checked_samples` counts each shard's samples against the index (a shard
  that ends early raises, naming the shard) and compares each JPEG with its recorded length and
  sha256 before it is decoded (decoders render most corrupt JPEG data as garbage, silently).

``python -m pipelines.verify_dataset`` (flickr_mammal/verify.py) checks everything, byte for byte.
"""

from __future__ import annotations

import hashlib
import tarfile
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import pandas as pd

REQUIRED: Final = ("key", "photo_id", "shard", "split", "label", "jpg_bytes")
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
        path = shard_dir / str(shard)
        if not path.is_file():
            problems.append(f"shard {shard} is listed in the index but missing from {shard_dir}")
            continue
        size, need = path.stat().st_size, min_shard_bytes(rows["jpg_bytes"])
        if size < need:
            problems.append(f"shard {shard} is {size} bytes, too short for the {len(rows)} "
                            f"samples the index lists (at least {need}): truncated")
    return problems


def check_index(index: pd.DataFrame, shard_dir: Path, source: Path) -> None:
    """Raise :class:`DatasetIntegrityError` naming the first problems of ``index``."""
    problems = index_problems(index, shard_dir)
    if problems:
        raise DatasetIntegrityError(f"{source}: {'; '.join(problems[:3])}"
                                    + (f" (+{len(problems) - 3} more)" if len(problems) > 3
                                       else "") + f"; {HINT}")


def checked_samples(src: Iterator[dict[str, Any]], urls: list[str], expected: Mapping[str, int],
                    digests: Mapping[str, tuple[int, str]] | None) -> Iterator[dict[str, Any]]:
    """Pass raw samples (in shard order) through, raising on a shard that ends early or holds
    more samples than the index says, and on a JPEG whose length or sha256 is not recorded."""
    seen: Counter[str] = Counter()
    current = None
    for sample in src:
        url, key = sample["__url__"], sample["__key__"]
        if url != current:  # shards come one after another here: the last one is complete
            if current is not None:
                _check_complete(current, seen[current], expected)
            current = url
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
