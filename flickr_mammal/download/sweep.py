"""Before a download stage: sweep the temp files that writers killed mid-write left beside the
images (the names are skewtools.io's, one source for writer and sweeper)."""

from __future__ import annotations

from pathlib import Path

from skewtools.io import remove_temp_files


def remove_partial_writes(folder: Path) -> int:
    """Delete the temp files that writers killed mid-write left in ``folder``'s subfolders (the
    image folders of a layout). Call it only while nothing writes there (before a download
    stage). Returns how many."""
    return remove_temp_files(folder, depth=1)
