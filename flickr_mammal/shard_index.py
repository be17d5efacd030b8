"""Find and open a build's shard index, checked: what every reader starts from.

A build folder holds ``shards/`` (the tars and ``shards.parquet``) and ``manifest.parquet``; a
shard folder alone holds the tars and the index. :func:`locate` accepts either (and a build
whose index was copied to its root beside ``shards/``); :func:`open_split` reads the index,
checks it (:func:`flickr_mammal.integrity.check_index`: shard names that stay inside the shard
folder, sizes, keys, and the row count against the manifest of a build folder) and returns the
rows of one split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flickr_mammal.classes import CLASS_NAMES
from flickr_mammal.integrity import DatasetIntegrityError, check_index
from flickr_mammal.shards import INDEX_NAME


@dataclass(frozen=True)
class IndexFiles:
    """Where a shard set's files are: the index, the shard folder, the build's manifest."""

    index: Path
    shard_dir: Path
    manifest: Path | None


def locate(root: str | Path) -> IndexFiles:
    """The files of the shard set at ``root`` (a build folder or a shard folder)."""
    root = Path(root)
    for index_path in (root / INDEX_NAME, root / "shards" / INDEX_NAME):
        if index_path.is_file():
            break
    else:
        raise FileNotFoundError(f"no {INDEX_NAME} in {root} or {root / 'shards'}; write shards "
                                "with flickr_mammal.shards.write_shards() first")
    shard_dir = index_path.parent
    # A build may keep its index copied to the build root and the tars in shards/.
    if shard_dir == root and (root / "shards").is_dir() and not any(root.glob("*.tar")):
        shard_dir = root / "shards"
    # The manifest is compared only in a build folder: a shard folder copied elsewhere may
    # sit beside an unrelated manifest.
    manifest = root / "manifest.parquet" if shard_dir != root else None
    return IndexFiles(index_path, shard_dir,
                      manifest if manifest is not None and manifest.is_file() else None)


def open_split(root: str | Path, split: str) -> tuple[pd.DataFrame, pd.DataFrame, IndexFiles]:
    """The checked index, its rows of ``split`` and the files; an unknown split raises, naming
    the ones there; a damaged index raises
    :class:`~flickr_mammal.integrity.DatasetIntegrityError`."""
    files = locate(root)
    index = pd.read_parquet(files.index)
    check_index(index, files.shard_dir, files.index, files.manifest)
    rows = index[index["split"] == split]
    if rows.empty:
        raise ValueError(f"split {split!r} has no samples in {files.index}; splits there: "
                         f"{sorted(index['split'].unique())}")
    return index, rows, files


def shard_totals(index: pd.DataFrame) -> dict[str, int]:
    """Samples per shard over the whole index (every split, placed or not)."""
    return {str(k): int(v) for k, v in index["shard"].value_counts().items()}


def class_names(index: pd.DataFrame) -> tuple[str, ...]:
    """The build's class names in label order, as its index rows give them (``label`` and
    ``class_name``; the index holds every split, so each split gets the same list).

    An index whose every row agrees with the shipped mammals gives all 42 names (held or not,
    so label ids and count columns match any mammal build); any other class list gives the
    names its rows carry, position = label id, and ``"label_<i>"`` for a label no row holds
    (a class of the file with no sample). Rows that give one label two names, or one name two
    labels, raise :class:`~flickr_mammal.integrity.DatasetIntegrityError` naming a sample.
    """
    labels = index["label"].astype("int64")
    if "class_name" not in index.columns:  # no names recorded: the label ids stand for them
        top = int(labels.max()) + 1 if len(labels) else 0
        return CLASS_NAMES if top <= len(CLASS_NAMES) else tuple(f"label_{i}" for i in range(top))
    rows = pd.DataFrame({"label": labels, "name": index["class_name"].astype(str),
                         "key": index["key"].astype(str), "shard": index["shard"].astype(str)})
    _check_one_name_per_label(rows)
    named = dict(zip(rows["label"].tolist(), rows["name"].tolist(), strict=True))
    if all(0 <= i < len(CLASS_NAMES) and CLASS_NAMES[i] == n for i, n in named.items()):
        return CLASS_NAMES
    return tuple(named.get(i, f"label_{i}") for i in range(max(named) + 1))


def _check_one_name_per_label(rows: pd.DataFrame) -> None:
    """Raise on the rarest (label, name) pair that shares its label or name with another."""
    pairs = rows.groupby(["label", "name"]).size().rename("n").reset_index()
    clash = pairs[pairs["label"].duplicated(keep=False) | pairs["name"].duplicated(keep=False)]
    if clash.empty:
        return
    odd = clash.sort_values(["n", "label", "name"]).iloc[0]
    row = rows[(rows["label"] == odd["label"]) & (rows["name"] == odd["name"])].iloc[0]
    raise DatasetIntegrityError(
        f"sample {row['key']} in shard {row['shard']}: label {odd['label']} with class "
        f"{odd['name']!r} in the index, where other rows pair that label or class otherwise; "
        "the index was edited: rebuild the shards (--stages shard) from the catalog")
