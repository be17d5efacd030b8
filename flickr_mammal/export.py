"""Export a build for sharing in the Hugging Face Hub's parquet layout.

``export_hf_parquet(root, out)`` writes every split of the shard set as
``out/data/{split}-NNNNN-of-NNNNN.parquet`` (image bytes embedded, the typed columns of
:func:`flickr_mammal.hf.features`; the build's ``val`` split is named ``validation``) and
``out/README.md``: a dataset card whose YAML header declares the licence (``other``, with a
``license_name``: each image carries its own Flickr licence), ``task_categories``,
``size_categories``, the features, splits and the ``default`` config's data files, and whose
body is a usage note, the per-image licences of this export, and DATASET.md's datasheet
sections, their statistics regenerated from this build when the build folder holds
``manifest.parquet`` and ``stats.json`` (and left out otherwise). Repository commands
(``python -m ...``) and the sections on building and loading with this repository's code are
left out of the card. ``load_dataset(out)`` and ``load_dataset("parquet", data_files=...)``
then read it with no other file.

Every sample is checked as it is read (:func:`flickr_mammal.hf.to_hf_dataset`): a damaged or
edited build stops the export with :class:`~flickr_mammal.integrity.DatasetIntegrityError`.
The temporary ``datasets`` cache (``fm-export-*``) is removed on return, on an error and on
SIGTERM/SIGINT (a SIGTERM is turned into ``SystemExit(143)`` while the export runs in the main
thread).
"""

from __future__ import annotations

import json
import logging
import math
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from flickr_mammal.hf import FLICKR_LICENSES, hf_split, to_hf_dataset
from flickr_mammal.layout import Layout
from flickr_mammal.manifest import read_manifest
from flickr_mammal.report import SECTION_BEGIN, datasheet_section
from flickr_mammal.shard_index import locate

log = logging.getLogger(__name__)

DATASHEET: Final = Path(__file__).resolve().parents[1] / "DATASET.md"
USAGE: Final = """```python
from datasets import load_dataset

ds = load_dataset("PATH_OR_REPO")            # splits: {splits}
ds["train"].features["label"].names[:3]      # ['alpaca', 'antelope', 'armadillo']

# one federated partition per continent (flwr-datasets)
from flwr_datasets import FederatedDataset
from flwr_datasets.partitioner import NaturalIdPartitioner

fds = FederatedDataset(dataset="PATH_OR_REPO",
                       partitioners={{"train": NaturalIdPartitioner(partition_by="continent")}})
africa = fds.load_partition(0)
```
"""
LICENSE_NAME: Final = "flickr-per-image-licenses"
# The card's sections made of this repository's commands and code, left out of the card.
REPO_SECTIONS: Final = ("How to load partitions", "How to rebuild",
                         "The authors' release vs a fresh build")
SIZE_CATEGORIES: Final = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                          (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"))


@dataclass(frozen=True)
class ExportConfig:
    root: Path                      # shard folder or build root
    out: Path
    max_shard_bytes: int = 500_000_000    # the Hub's usual parquet shard size
    datasheet: Path | None = DATASHEET
    splits: tuple[str, ...] = field(default=())   # () = every split in the shard index

    def __post_init__(self) -> None:
        if self.max_shard_bytes < 1:
            raise ValueError(f"max_shard_bytes must be >= 1 (got {self.max_shard_bytes})")
        if self.datasheet is not None and not Path(self.datasheet).is_file():
            raise ValueError(f"no datasheet at {self.datasheet}; pass datasheet=None to skip")
        if Path(self.out).exists() and any(Path(self.out).iterdir()):
            raise ValueError(f"{self.out} exists and is not empty; choose a new folder")


def size_category(rows: int) -> str:
    """The Hub's ``size_categories`` value for ``rows`` examples."""
    return next((name for limit, name in SIZE_CATEGORIES if rows < limit), "n>10M")


def _card_yaml(split_sizes: dict[str, int], features: Any) -> str:
    header = {
        "pretty_name": "Flickr-Mammal (rebuild)",
        "license": "other",
        "license_name": LICENSE_NAME,
        "task_categories": ["image-classification"],
        "task_ids": ["multi-class-image-classification"],
        "size_categories": [size_category(sum(split_sizes.values()))],
        "configs": [{"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*"} for s in split_sizes]}],
        "dataset_info": {"features": features._to_yaml_list(),  # the build's classes
                         "splits": [{"name": s, "num_examples": n}
                                    for s, n in split_sizes.items()]},
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _licence_table(licences: pd.Series) -> str:
    counts = licences.fillna(-1).astype(int).value_counts().sort_index()
    lines = ["| licence id | licence | images |", "|---:|---|---:|"]
    lines += [f"| {i} | {FLICKR_LICENSES.get(i, 'unknown')} | {n} |" for i, n in counts.items()]
    return "\n".join(lines)


def _licence_section(licences: pd.Series) -> str:
    return ("## Licences\n\nEach image keeps its own Flickr licence: the `license` column (the "
            "Flickr licence id) and `license_name`; credit the `owner` "
            "(`https://www.flickr.com/photos/<owner>/<photo_id>`) when you share an image. "
            "NC licences forbid commercial use, ND licences derivatives. This export:\n\n"
            + _licence_table(licences) + "\n")


def datasheet_for_card(sheet: str, stats_section: str | None) -> str:
    """DATASET.md for a card: no title, no repository sections or commands; its statistics
    section replaced by ``stats_section`` (or removed when None)."""
    sheet = re.sub(r"\A# .*\n", "", sheet)     # the card has its own title
    parts = re.split(r"(?m)^(?=## )", sheet)
    kept = []
    for part in parts:
        heading = part.splitlines()[0] if part.startswith("## ") else ""
        if any(name in heading for name in REPO_SECTIONS):
            continue
        if SECTION_BEGIN in part:   # only the heading and this build's statistics
            part = heading + "\n\n" + (stats_section or "") + "\n\n"
            if stats_section is None:
                continue
        kept.append(part)
    text = "".join(kept)
    text = re.sub(r"```[a-z]*\n(?:(?!```).)*?python -m .*?```\n?", "", text, flags=re.S)
    return re.sub(r" ?\(`python -m [^`]*`\)", "", text)


def _card_body(config: ExportConfig, split_sizes: dict[str, int], licences: pd.Series) -> str:
    usage = USAGE.format(splits=", ".join(split_sizes))
    text = "# Flickr-Mammal (rebuild)\n\n" + usage + "\n" + _licence_section(licences)
    if config.datasheet is None:
        return text
    sheet = Path(config.datasheet).read_text(encoding="utf-8")
    layout = Layout.at(config.root)
    section = None
    if SECTION_BEGIN in sheet and layout.manifest.is_file() and layout.stats.is_file():
        stats = json.loads(layout.stats.read_text(encoding="utf-8"))
        section = datasheet_section(read_manifest(layout.manifest), stats, "Statistics of "
                                    "this export's build")
    return text + "\n" + datasheet_for_card(sheet, section)


@contextmanager
def _signals_end_the_export() -> Iterator[None]:
    """SIGTERM raises SystemExit(143) (SIGINT raises KeyboardInterrupt anyway), so ``with``
    blocks clean up; only in the main thread, where Python delivers signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def export_hf_parquet(config: ExportConfig) -> dict[str, Any]:
    """Write the parquet shards and the card; return ``{split: [file names]}`` and sizes."""
    index_path = locate(config.root).index
    splits = config.splits or tuple(sorted(pd.read_parquet(index_path,
                                                           columns=["split"])["split"].unique()))
    data = Path(config.out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    licences = []
    feats: Any = None  # the splits' datasets.Features (the build's class names)
    with _signals_end_the_export(), tempfile.TemporaryDirectory(prefix="fm-export-") as cache:
        for split in splits:
            ds = to_hf_dataset(config.root, split, cache_dir=cache)
            name = hf_split(split)
            n = max(1, math.ceil(ds.data.nbytes / config.max_shard_bytes))
            files[name] = []
            for i in range(n):
                file = f"{name}-{i:05d}-of-{n:05d}.parquet"
                ds.shard(n, i, contiguous=True).to_parquet(data / file)
                files[name].append(file)
            sizes[name], feats = len(ds), ds.features
            licences.append(pd.Series(ds["license"], dtype="float64"))
            log.info("split %s: %d rows in %d parquet files", name, len(ds), n)
    card = (_card_yaml(sizes, feats) + "\n"
            + _card_body(config, sizes, pd.concat(licences, ignore_index=True)))
    (Path(config.out) / "README.md").write_text(card, encoding="utf-8")
    return {"files": files, "rows": sizes}
