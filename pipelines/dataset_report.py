"""Regenerate a build's report/ and DATASET.md's statistics section from the build folder.

    python -m pipelines.dataset_report DIR [--datasheet DATASET.md] [--title TEXT]

Reads DIR/manifest.parquet and DIR/stats.json (written by ``pipelines.build_dataset``), rewrites
DIR/report/, and replaces the text between the ``build-stats`` markers of the datasheet.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from flickr_mammal.layout import Layout
from flickr_mammal.manifest import read_manifest
from flickr_mammal.report import (
    ReportTables,
    datasheet_section,
    replace_section,
    write_report,
)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.dataset_report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", nargs="?", metavar="DIR", help="a build's --out folder")
    p.add_argument("--build", help=argparse.SUPPRESS)   # deprecated spelling of DIR
    p.add_argument("--datasheet", default=None, help="markdown file to update (DATASET.md)")
    p.add_argument("--title", default="Statistics of the build", help="section title")
    args = p.parse_args(argv)
    if (args.dir is None) == (args.build is None):
        p.error("give the build folder once, as DIR")
    args.build = args.dir or args.build
    layout = Layout.at(args.build)
    if not layout.manifest.is_file() or not layout.stats.is_file():
        print(f"error: no manifest.parquet / stats.json in {args.build}; run "
              "python -m pipelines.build_dataset first", file=sys.stderr)
        return 2
    manifest = read_manifest(layout.manifest)   # old and new manifests alike
    stats = json.loads(layout.stats.read_text(encoding="utf-8"))
    tables = ReportTables.from_manifest(manifest)   # once, for report/ and the datasheet
    write_report(manifest, layout.report, tables)
    section = datasheet_section(manifest, stats, args.title, tables)
    if args.datasheet:
        path = Path(args.datasheet)
        path.write_text(replace_section(path.read_text(encoding="utf-8"), section),
                        encoding="utf-8")
        print(f"updated {path} from {args.build}")
    else:
        print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
