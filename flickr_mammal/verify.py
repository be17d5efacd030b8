"""Verify a built Flickr-Mammal folder byte for byte: ``python -m pipelines.verify_dataset DIR``.

Reads every shard once and checks that

- every sample of the index is in its shard exactly once, with its ``.cls``, ``.jpg`` and
  ``.json`` members, and no shard holds a sample the index does not list;
- every JPEG has the length and sha256 the index records and, where ``manifest.parquet`` is
  beside the shards, the sha256 the manifest records for that photo; every sample's ``.cls``
  label and its ``.json`` label, split, shard, continent, subcontinent and country are the
  index's (integrity.sample_problem, the readers' own check);
- the index is consistent in itself (integrity.index_problems: shard names that stay inside the
  shard folder and are regular files, keys, sizes), with the shard files in the folder (none
  missing, none stray) and with the manifest (same photos; same shard, split, label, continent,
  subcontinent and country).

Problems are collected as data (one line each), never raised, so one run lists them all.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from flickr_mammal.integrity import index_problems, row_facts, sample_problem
from flickr_mammal.shard_index import locate
from skewtools.loaders.shard_files import ShardPathError, shard_path, shard_samples

log = logging.getLogger(__name__)

_PARTS = ("cls", "jpg", "json")


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_dataset` found: counts and one line per problem (empty when clean)."""

    root: Path
    samples: int
    shards: int
    manifest_rows: int | None
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        manifest = ("no manifest" if self.manifest_rows is None
                    else f"manifest {self.manifest_rows} rows")
        verdict = "clean" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"verified {self.root}: {self.samples} samples in {self.shards} shards, "
                f"{manifest}: {verdict}")


@dataclass
class _Seen:
    """One sample as found in the shards."""

    shard: str
    parts: Counter[str]
    label: str | None = None
    size: int = -1
    sha256: str = ""
    members: dict[str, bytes] | None = None   # cls and json, for the index-row comparison


def _scan_shard(path: Path, seen: dict[str, list[_Seen]], problems: list[str]) -> None:
    """Every member of one tar, hashed; a tar that cannot be read to its end is a problem."""
    try:
        for sample in shard_samples([path]):
            parts = Counter({k: 1 for k in sample if not k.startswith("__")})
            entry = _Seen(path.name, parts, members={k: sample[k] for k in ("cls", "json")
                                                     if k in sample})
            seen[sample["__key__"]].append(entry)
            if "cls" in sample:
                entry.label = sample["cls"].decode("ascii", "replace").strip()
            if "jpg" in sample:
                entry.size = len(sample["jpg"])
                entry.sha256 = hashlib.sha256(sample["jpg"]).hexdigest()
    except (ShardPathError, ValueError, OSError, EOFError) as exc:
        problems.append(f"shard {path.name} cannot be read to its end "
                        f"({type(exc).__name__}: {exc}): truncated or corrupt")


def _sample_problems(row: Any, found: list[_Seen], manifest_sha: dict[str, str],
                     facts: Any = None) -> list[str]:
    where = f"sample {row.key} ({row.shard})"
    if not found:
        return [f"{where}: missing from the shards"]
    if len(found) > 1:
        return [f"{where}: found {len(found)} times, in {sorted(s.shard for s in found)}"]
    got = found[0]
    problems = []
    if got.shard != row.shard:
        problems.append(f"{where}: found in {got.shard} instead")
    if any(got.parts[p] != 1 for p in _PARTS) or set(got.parts) - set(_PARTS):
        problems.append(f"{where}: members {dict(got.parts)}, expected one each of {_PARTS}")
    if got.label is not None and got.label != str(row.label):
        problems.append(f"{where}: label {got.label} in the shard, {row.label} in the index")
    elif facts is not None and got.members is not None and {"cls", "json"} <= got.members.keys():
        differs = sample_problem(got.members, facts)
        if differs is not None:
            problems.append(f"{where}: {differs}")
    if "jpg_sha256" in row._fields and got.sha256 and got.sha256 != row.jpg_sha256:
        problems.append(f"{where}: JPEG sha256 differs from the index (corrupt image)")
    elif got.size >= 0 and got.size != row.jpg_bytes:
        problems.append(f"{where}: JPEG is {got.size} bytes, the index says {row.jpg_bytes}")
    want = manifest_sha.get(str(row.photo_id))
    if want and got.sha256 and got.sha256 != want:
        problems.append(f"{where}: JPEG sha256 differs from the manifest's")
    return problems


def _same(value: Any) -> str:
    """A cell as comparable text: null, "" and "unknown" are one missing value."""
    return "" if value is None or pd.isna(value) or str(value) in ("", "unknown") else str(value)


def _manifest_problems(manifest: pd.DataFrame, index: pd.DataFrame) -> list[str]:
    sharded = manifest[manifest["shard"].astype(str) != ""]
    problems = []
    dup = sharded["photo_id"][sharded["photo_id"].duplicated()]
    if len(dup):
        problems.append(f"manifest lists photo(s) more than once: {list(dup.unique()[:5])}")
    m, i = (frame.assign(photo_id=frame["photo_id"].astype(str)).drop_duplicates("photo_id")
            .set_index("photo_id") for frame in (sharded, index))
    for pid in sorted(set(m.index) - set(i.index))[:20]:
        problems.append(f"photo {pid}: in the manifest (shard {m.at[pid, 'shard']}) but not in "
                        "the index")
    for pid in sorted(set(i.index) - set(m.index))[:20]:
        problems.append(f"photo {pid}: in the index but not in the manifest")
    both = sorted(set(m.index) & set(i.index))
    for column in ("shard", "split", "label", "continent", "subcontinent", "country"):
        if column in m.columns and column in i.columns:
            differ = [p for p in both if _same(m.at[p, column]) != _same(i.at[p, column])]
            for pid in differ[:20]:
                problems.append(f"photo {pid}: {column} {m.at[pid, column]} in the manifest, "
                                f"{i.at[pid, column]} in the index")
    return problems


def verify_dataset(root: str | Path, progress: bool = True) -> VerifyReport:
    """Check a build folder (or a shard folder) completely; see the module docstring."""
    root = Path(root)
    files = locate(root)
    shard_dir, manifest_path = files.shard_dir, files.manifest
    index = pd.read_parquet(files.index)
    problems = index_problems(index, shard_dir)
    manifest = pd.read_parquet(manifest_path) if manifest_path is not None else None
    manifest_sha: dict[str, str] = {}
    if manifest is not None:
        manifest_sha = dict(zip(manifest["photo_id"].astype(str), manifest["sha256"],
                                strict=True)) if "sha256" in manifest.columns else {}
        problems += _manifest_problems(manifest, index)
    listed = set(index["shard"].astype(str))
    on_disk = sorted(p for p in shard_dir.glob("*.tar"))
    problems += [f"shard {p.name} is in {shard_dir} but not in the index (stray)"
                 for p in on_disk if p.name not in listed]
    seen: dict[str, list[_Seen]] = defaultdict(list)
    for path in tqdm(on_disk, desc="verify", unit="shard", disable=None if progress else True):
        if path.name in listed:
            try:   # index_problems has reported a shard no reader may open
                _scan_shard(shard_path(shard_dir, path.name), seen, problems)
            except ShardPathError:
                continue
    index_keys = set(index["key"])
    unique = index.drop_duplicates("key")
    facts = row_facts(unique)
    for row in unique.itertuples(index=False):
        problems += _sample_problems(row, seen.get(row.key, []), manifest_sha, facts[row.key])
    problems += [f"sample {key} ({found[0].shard}): in the shards but not in the index"
                 for key, found in sorted(seen.items()) if key not in index_keys]
    report = VerifyReport(root, len(index), len(listed), None if manifest is None
                          else len(manifest), tuple(problems))
    log.info("%s", report.summary())
    return report
