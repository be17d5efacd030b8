"""Build (or resume building) Flickr-Mammal: ``python -m pipelines.build_dataset --out DIR``.

Runs search -> download -> clean -> geocode -> shard (flickr_mammal.build). Running the same
command again after a crash or Ctrl-C continues where it stopped. A missing or rejected API key,
an invalid option, or a classifier whose weights cannot be had stops with one line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from flickr_mammal.build import (
    DEFAULT_LICENSES,
    FLICKR_START,
    GROUP_BY,
    STAGES,
    BuildConfig,
    BuildFolderError,
    BuildLocked,
    build,
    parse_date,
)
from flickr_mammal.classes import parse_classes
from flickr_mammal.classifiers import DEFAULT_CLASSIFIER, ClassifierUnavailable
from flickr_mammal.clean_config import DEVICES, PRECISIONS, CleanConfig
from flickr_mammal.download import DownloadConfig, DownloadWorkerLost
from flickr_mammal.dump_read import (
    FORMATS,
    DumpColumnError,
    DumpScanMismatch,
    MetadataConfig,
    parse_columns,
)
from flickr_mammal.flickr_api import DEFAULT_ENDPOINT, FlickrAuthError, FlickrError, redact

EXIT_USAGE = 2


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.build_dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add = p.add_argument
    add("--out", required=True, help="output folder (catalog, images, shards, manifest, report)")
    add("--api-key", default=None, help="Flickr API key (default: env FLICKR_API_KEY)")
    add("--flickr-endpoint", default=DEFAULT_ENDPOINT, help="Flickr REST endpoint")
    add("--classes", default="all", help="comma-separated class names (default: all 42)")
    add("--per-class", type=int, default=40_000, help="candidates searched per class")
    add("--licenses", type=_ints, default=DEFAULT_LICENSES,
        help="comma-separated Flickr license ids (default: 1-10, CC 2.0 and public domain)")
    add("--min-upload-date", type=parse_date, default=FLICKR_START,
        help="YYYY-MM-DD or unix seconds (default 2004-01-01)")
    add("--max-upload-date", type=parse_date, default=None,
        help="YYYY-MM-DD or unix seconds (default: the first run's day, then remembered)")
    add("--classifier", default=DEFAULT_CLASSIFIER,
        help="cleaning classifier: pnasnet5large, efficientnet_lite0_pypi, a timm name, or none")
    add("--classifier-weights", default=None, help="checkpoint file for the classifier")
    add("--top-k", type=int, default=5, help="keep when a class index is in the top-k")
    add("--device", choices=DEVICES, default="auto", help="cleaning device")
    add("--batch-size", type=int, default=32, help="cleaning batch size")
    add("--clean-workers", type=int, default=2, help="DataLoader workers decoding images")
    add("--precision", choices=PRECISIONS, default="auto",
        help="cleaning precision (auto: bf16 on CUDA with an fp32 recheck near the top-k line)")
    add("--download-attempts", type=int, default=3,
        help="builds that may try a photo that failed for a transient reason (429, 5xx, ...)")
    add("--workers", type=int, default=32, help="download threads (per process)")
    add("--download-processes", type=int, default=2,
        help="download processes, each decoding one photo at a time: about one per core")
    add("--stages", type=_names, default=STAGES,
        help=f"comma-separated subset of {','.join(STAGES)} (default: all)")
    add("--image-size", type=int, default=300, help="longest side of stored images (px)")
    add("--rate-limit", type=float, default=3600.0, help="Flickr API calls per hour")
    add("--val-fraction", type=float, default=0.05, help="share of each class held out as val")
    add("--shard-samples", type=int, default=10_000, help="samples per shard")
    add("--group-by", choices=GROUP_BY, default="continent", help="shard grouping")
    add("--coord-decimals", type=int, default=2, help="decimals kept of exported coordinates")
    add("--commit-every", type=int, default=256, help="records per catalog transaction")
    add("--metadata", default=None, help="search a local metadata dump instead of the API: "
        "the YFCC100M dataset file (TSV, or .bz2) or a parquet file or folder (no key needed)")
    add("--metadata-format", choices=("auto", *FORMATS), default="auto",
        help="format of --metadata (default: parquet for .parquet and folders, else yfcc100m)")
    add("--metadata-columns", default="",
        help="field=column,... to map the dump's column names (flickr_mammal.dump_read.FIELDS)")
    add("--metadata-chunk-mb", type=float, default=64.0, help="TSV megabytes per scan chunk")
    add("--no-progress", action="store_true", help="no progress bars")
    add("--log-level", default="INFO", help="logging level")
    return p


def api_key_from(args: argparse.Namespace) -> str:
    """``--api-key``, else the ``FLICKR_API_KEY`` environment variable, else empty."""
    return args.api_key if args.api_key is not None else os.environ.get("FLICKR_API_KEY", "")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The BuildConfig for parsed arguments (raises ValueError / KeyError on bad values)."""
    if not _names(args.classes):  # parse_classes would read "" as all 42 and ",,," as none
        raise ValueError(f"--classes {args.classes!r} names no class: give comma-separated "
                         "names such as cat,dog, or all")
    return BuildConfig(
        out=args.out, api_key=api_key_from(args), flickr_endpoint=args.flickr_endpoint,
        classes=tuple(c.name for c in parse_classes(args.classes)), per_class=args.per_class,
        licenses=args.licenses, min_upload_date=args.min_upload_date,
        max_upload_date=args.max_upload_date, rate_limit=args.rate_limit,
        stages=args.stages,
        download=DownloadConfig(workers=args.workers, processes=args.download_processes,
                                max_side=args.image_size, max_attempts=args.download_attempts),
        clean=CleanConfig(classifier=args.classifier, weights=args.classifier_weights,
                          top_k=args.top_k, device=args.device, batch_size=args.batch_size,
                          num_workers=args.clean_workers, precision=args.precision),
        val_fraction=args.val_fraction, shard_samples=args.shard_samples,
        group_by=args.group_by, coord_decimals=args.coord_decimals,
        commit_every=args.commit_every, progress=not args.no_progress,
        metadata=None if args.metadata is None else MetadataConfig(
            args.metadata, format=args.metadata_format,
            columns=parse_columns(args.metadata_columns),
            chunk_bytes=int(args.metadata_chunk_mb * (1 << 20))),
    )


class _Redact(logging.Filter):
    """Keeps the API key out of every log line, whatever library logs it."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret:
            record.msg = redact(record.getMessage(), self.secret)
            record.args = None
        return True


def _fail(message: str, secret: str, code: int) -> int:
    print(f"error: {redact(message, secret)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    secret = api_key_from(args)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redactor = _Redact(secret)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(redactor)
    try:
        return _run(args, secret)
    finally:  # in-process callers keep their logging as it was
        for handler in handlers:
            handler.removeFilter(redactor)


def _run(args: argparse.Namespace, secret: str) -> int:
    try:
        config = config_from_args(args)
    except (ValueError, KeyError) as exc:
        return _fail(exc.args[0] if isinstance(exc, KeyError) else str(exc), secret, EXIT_USAGE)
    try:
        summary = build(config)
    except (FlickrAuthError, ClassifierUnavailable, BuildFolderError, DumpColumnError,
            DumpScanMismatch) as exc:  # before any work
        return _fail(str(exc), secret, EXIT_USAGE)
    except (FlickrError, BuildLocked, DownloadWorkerLost) as exc:
        return _fail(str(exc), secret, 1)
    for line in summary.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
