"""Verify a built Flickr-Mammal folder: ``python -m pipelines.verify_dataset DIR``.

Reads every shard and checks every sample against the index and the manifest
(flickr_mammal/verify.py): each sample present exactly once, each JPEG's sha256 as recorded,
index consistent with the shards and the manifest. Prints a summary; exit 0 when clean, 1 with
one line per problem (at most --max-problems of them), 2 when DIR is not a built folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from flickr_mammal.verify import verify_dataset


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.verify_dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="a build folder (with shards/ and manifest.parquet) or a shard "
                               "folder (with shards.parquet)")
    p.add_argument("--max-problems", type=int, default=50, help="problem lines printed at most")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        report = verify_dataset(args.dir, progress=not args.no_progress)
    except (FileNotFoundError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown = report.problems[:max(args.max_problems, 0)]
    for line in shown:
        print(line)
    if len(report.problems) > len(shown):
        print(f"... and {len(report.problems) - len(shown)} more problem(s)")
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
