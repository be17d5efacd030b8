"""Export a build for sharing in the Hugging Face Hub's parquet layout.

``export_hf_parquet(root, out)`` writes every split of the shard set as
``out/data/{split}-NNNNN-of-NNNNN.parquet`` (image bytes embedded, the typed columns of
:func:`flickr_mammal.hf.features`) and ``out/README.md``: a dataset card whose YAML header
declares the features, splits and the ``default`` config's data files, and whose body is
DATASET.md, its statistics section regenerated from this build when the build folder holds
``manifest.parquet`` and ``stats.json``. ``load_dataset(out)`` and
``load_dataset("parquet", data_files=...)`` then read it with no other file.
"""

from __future__ import annotations

import json
import logging
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pandas as pd
import yaml

from flickr_mammal.hf import features, to_hf_dataset
from flickr_mammal.layout import Layout
from flickr_mammal.manifest import read_manifest
from flickr_mammal.reader import _locate
from flickr_mammal.report import SECTION_BEGIN, datasheet_section, replace_section

log = logging.getLogger(__name__)

DATASHEET: Final = Path(__file__).resolve().parents[1] / "DATASET.md"
USAGE: Final = """```python
from datasets import load_dataset

ds = load_dataset("PATH_OR_REPO")            # splits: {splits}
ds["train"].features["label"].names[:3]      # ['alpaca', 'antelope', 'armadillo']
```
"""


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


def _card_yaml(split_sizes: dict[str, int]) -> str:
    header = {
        "pretty_name": "Flickr-Mammal (rebuild)",
        "task_categories": ["image-classification"],
        "license": "other",
        "configs": [{"config_name": "default", "data_files": [
            {"split": s, "path": f"data/{s}-*"} for s in split_sizes]}],
        "dataset_info": {"features": features()._to_yaml_list(),
                         "splits": [{"name": s, "num_examples": n}
                                    for s, n in split_sizes.items()]},
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n"


def _card_body(config: ExportConfig, split_sizes: dict[str, int]) -> str:
    usage = USAGE.format(splits=", ".join(split_sizes))
    text = "# Flickr-Mammal (rebuild)\n\n" + usage
    if config.datasheet is None:
        return text
    sheet = Path(config.datasheet).read_text(encoding="utf-8")
    sheet = re.sub(r"\A# .*\n", "", sheet)     # the card has its own title
    layout = Layout.at(config.root)
    if SECTION_BEGIN in sheet and layout.manifest.is_file() and layout.stats.is_file():
        stats = json.loads(layout.stats.read_text(encoding="utf-8"))
        section = datasheet_section(read_manifest(layout.manifest), stats, "Statistics of "
                                    "this export's build")
        sheet = replace_section(sheet, section)
    return text + "\n" + sheet


def export_hf_parquet(config: ExportConfig) -> dict[str, Any]:
    """Write the parquet shards and the card; return ``{split: [file names]}`` and sizes."""
    index_path, _ = _locate(Path(config.root))
    splits = config.splits or tuple(sorted(pd.read_parquet(index_path,
                                                           columns=["split"])["split"].unique()))
    data = Path(config.out) / "data"
    data.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="fm-export-") as cache:
        for split in splits:
            ds = to_hf_dataset(config.root, split, cache_dir=cache)
            n = max(1, math.ceil(ds.data.nbytes / config.max_shard_bytes))
            files[split] = []
            for i in range(n):
                name = f"{split}-{i:05d}-of-{n:05d}.parquet"
                ds.shard(n, i, contiguous=True).to_parquet(data / name)
                files[split].append(name)
            sizes[split] = len(ds)
            log.info("split %s: %d rows in %d parquet files", split, len(ds), n)
    card = _card_yaml(sizes) + "\n" + _card_body(config, sizes)
    (Path(config.out) / "README.md").write_text(card, encoding="utf-8")
    return {"files": files, "rows": sizes}
