"""Import speed of the authors' release (pipelines.import_release) on a synthetic archive.

Writes a gzipped release in the real layout (tests/flickr_mammal/release_fixtures.py: real
photos, 320 x 240 JPEGs, every file different, the four schemes' list files after the images
as ``tar czf`` of a folder would store them), then imports it into a fresh folder and prints the
time of the layout pass, of the import (decode, check, re-encode, catalog, shards, index,
manifest, stats, report) and images/s overall. The machine's load average is printed too:
timings taken on a busy machine say so.

    python benchmarks/bench_import_release.py [--images 10000] [--workers N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from flickr_mammal.release.importer import ImportConfig, import_release
from flickr_mammal.release.layout import read_layout
from tests.flickr_mammal import release_fixtures as rf


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=10_000, help="photos in the archive")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    p.add_argument("--keep", type=Path, default=None, help="work in DIR and keep it")
    args = p.parse_args(argv)
    per_class = -(-args.images // len(rf.FOLDERS))
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        archive = rf.write_release(root / "geo_animal.tar.gz", per_class,
                                   photo_bytes=lambda i: rf.photo(i, size=320))
        made = time.perf_counter() - start
        size_mib = archive.stat().st_size / 2**20
        start = time.perf_counter()
        layout = read_layout(archive)
        scanned = time.perf_counter() - start
        config = ImportConfig(archive, root / "out", workers=args.workers, progress=False)
        start = time.perf_counter()
        summary = import_release(config, layout)
        imported = time.perf_counter() - start
    n = len(layout.images)
    total = scanned + imported
    print(f"archive: {n} images, {size_mib:.0f} MiB gz "
          f"(written in {made:.1f}s)")
    print(f"layout pass: {scanned:.1f}s ({n / scanned:,.0f} images/s)")
    print(f"import pass + shards/manifest/report: {imported:.1f}s, kept {summary.kept}")
    print(f"total: {total:.1f}s, {n / total:,.0f} images/s with {args.workers} workers on "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
