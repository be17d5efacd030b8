"""Where a build puts things inside its output folder: one place, so stages agree on paths."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from flickr_mammal.records import is_valid_photo_id


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

    @cached_property
    def _images_resolved(self) -> Path:
        return self.images.resolve()

    @cached_property
    def _checked_folders(self) -> set[str]:
        return set()

    def image_path(self, photo_id: str) -> Path:
        """``images/NN/<photo_id>.jpg``; raises ValueError unless ``photo_id`` is a plain Flickr
        id (digits) whose path stays inside ``images/`` (the ids come from the network)."""
        if not is_valid_photo_id(photo_id):
            raise ValueError(f"photo id {str(photo_id)[:40]!r} is not a Flickr id (digits only)")
        # Two-level fan-out keeps folders small at 700K+ files.
        fan_out = photo_id[-2:].rjust(2, "0")
        folder = self.images / fan_out
        path = folder / f"{photo_id}.jpg"
        # Defence in depth: a fan-out folder or file that is a symlink could still lead
        # outside. A folder found to be a real directory inside images/ is not resolved again
        # (resolve() costs an lstat per path component, for every photo); the file is lstat-ed.
        if fan_out not in self._checked_folders:
            if not folder.resolve().is_relative_to(self._images_resolved):
                raise ValueError(f"image path {path} leads outside {self.images}")
            if folder.is_dir() and not folder.is_symlink():
                self._checked_folders.add(fan_out)
        if path.is_symlink() and not path.resolve().is_relative_to(self._images_resolved):
            raise ValueError(f"image path {path} leads outside {self.images}")
        return path
