"""Import the authors' release: ``python -m pipelines.import_release geo_animal.tar.gz --out DIR``.

Turns the paper's Zenodo archive (10.5281/zenodo.3676081) into shards, index and manifest, as a
build would write them, with the paper's 5- and 13-part partitions as manifest and index columns
(``load_partitions(DIR, by="paper_5parts_skewed", split="train")``). The archive is read as a
stream, twice (layout first, then the photos); running the same command again after a crash or
kill -9 continues where it stopped. ``--dry-run`` prints the layout and writes nothing.
An archive laid out otherwise, or a bad option, stops with one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from flickr_mammal.build import BuildLocked
from flickr_mammal.build_guard import BuildFolderError
from flickr_mammal.release.importer import ImportConfig, import_release
from flickr_mammal.release.layout import ReleaseLayoutError, read_layout
from pipelines._cli import FieldOption, add_field_options, field_values

EXIT_USAGE = 2
_I = ImportConfig
OPTIONS: tuple[FieldOption, ...] = (
    FieldOption("--image-side", _I, "max_side", "longest side (px) of the images stored",
                aliases=("--image-size",)),
    FieldOption("--quality", _I, "quality", "JPEG quality of stored images"),
    FieldOption("--workers", _I, "workers", "threads decoding and re-encoding photos"),
    FieldOption("--commit-every", _I, "commit_every", "photos per catalog transaction"),
    FieldOption("--shard-samples", _I, "shard_samples", "samples per shard"),
    FieldOption("--progress", _I, "progress", "progress bars (--no-progress: none)"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.import_release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("archive", help="the release's geo_animal.tar.gz (any tar, compressed or not)")
    p.add_argument("--out", help="output folder (catalog, images, shards, manifest, report)")
    p.add_argument("--dry-run", action="store_true", help="print the layout, write nothing")
    add_field_options(p, OPTIONS)
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.out is None and not args.dry_run:
        return _fail("give --out DIR (or --dry-run to only print the layout)")
    try:
        config = ImportConfig(args.archive, args.out or ".",
                              **field_values(args, OPTIONS, ImportConfig))
        layout = read_layout(config.archive)
    except (ValueError, ReleaseLayoutError) as exc:
        return _fail(str(exc))
    if args.dry_run:
        for line in layout.describe():
            print(line)
        return 0
    try:
        summary = import_release(config, layout)
    except (BuildFolderError, ReleaseLayoutError) as exc:
        return _fail(str(exc))
    except BuildLocked as exc:
        return _fail(str(exc), 1)
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
