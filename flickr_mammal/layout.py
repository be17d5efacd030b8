"""Where a build puts things inside its output folder: one place, so stages agree on paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """Paths inside a build's output folder ``root``."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Layout:
        return cls(Path(root))

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def images(self) -> Path:
        """Downloaded, re-encoded JPEGs waiting for sharding (``images/NN/<photo_id>.jpg``)."""
        return self.root / "images"

    @property
    def shards(self) -> Path:
        """WebDataset tars and their index (``shards.parquet``, written by shards.py)."""
        return self.root / "shards"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def stats(self) -> Path:
        return self.root / "stats.json"

    @property
    def report(self) -> Path:
        return self.root / "report"

    def image_path(self, photo_id: str) -> Path:
        # Two-level fan-out keeps folders small at 700K+ files.
        return self.images / photo_id[-2:].rjust(2, "0") / f"{photo_id}.jpg"
