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
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from flickr_mammal.build import (
    GROUP_BY,
    STAGES,
    BuildConfig,
    BuildFolderError,
    BuildLocked,
    build,
    parse_date,
)
from flickr_mammal.classes import CLASS_NAMES, parse_classes
from flickr_mammal.clean.classifiers import ClassifierUnavailable
from flickr_mammal.clean.config import DEVICES, PRECISIONS
from flickr_mammal.download import DownloadWorkerLost
from flickr_mammal.dump.read import (
    DumpColumnError,
    DumpFileError,
    DumpScanMismatch,
    MetadataConfig,
    format_names,
    parse_columns,
)
from flickr_mammal.flickr_api import FlickrAuthError, FlickrError, redact
from pipelines._cli import FieldOption, add_field_options, field_values

EXIT_USAGE = 2


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _joined(values: Sequence[object]) -> str:
    return ",".join(str(v) for v in values)


def _class_names(text: str) -> tuple[str, ...]:
    if not _names(text):  # parse_classes would read "" as all 42 and ",,," as none
        raise ValueError(f"--classes {text!r} names no class: give comma-separated "
                         "names such as cat,dog, or all")
    try:
        return tuple(c.name for c in parse_classes(text))
    except KeyError:  # not all mammals: BuildConfig checks them against --classes-file
        return _names(text)


def _classes_text(names: Sequence[str]) -> str:
    return "all" if tuple(names) == CLASS_NAMES else _joined(names)


def _date_text(seconds: int) -> str:
    day = datetime.fromtimestamp(seconds, UTC)
    return f"{day:%Y-%m-%d}" if seconds % 86_400 == 0 else str(seconds)


def _date(flag: str) -> Callable[[str], int]:
    """Reads a date option in config_from_args, so a bad one is a one-line error (argparse's
    own type errors print the whole usage)."""
    def read(text: str) -> int:
        try:
            return parse_date(text)
        except ValueError as exc:
            raise ValueError(f"{flag} {exc}") from None
    return read


def _columns_text(columns: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={column}" for name, column in columns)


_MB = 1 << 20
# Every option that sets a config field; its default comes from the field (pipelines/_cli.py).
# Fields of BuildConfig, of its download / clean configs ("download." / "clean." + name), and
# of the MetadataConfig built when --metadata is given.
BUILD, DOWNLOAD, CLEAN, METADATA = BuildConfig, "download.", "clean.", MetadataConfig
OPTIONS: tuple[FieldOption, ...] = (
    FieldOption("--flickr-endpoint", BUILD, "flickr_endpoint", "Flickr REST endpoint"),
    FieldOption("--classes", BUILD, "classes", "comma-separated class names, or all (42)", type=str,
                show=_classes_text, read=_class_names),
    FieldOption("--classes-file", BUILD, "classes_file", "CSV class list (header: name, and "
                "optional search, synonyms, exclude, imagenet); default: the 42 mammals",
                type=str),
    FieldOption("--per-class", BUILD, "per_class", "candidates searched per class"),
    FieldOption("--licenses", BUILD, "licenses", "comma-separated Flickr license ids "
                "(CC 2.0 and public domain)", type=_ints, show=_joined),
    FieldOption("--min-upload-date", BUILD, "min_upload_date", "YYYY-MM-DD or unix seconds",
                type=str, show=_date_text, read=_date("--min-upload-date")),
    FieldOption("--max-upload-date", BUILD, "max_upload_date", "YYYY-MM-DD or unix seconds "
                "(default: the first run's day, then remembered)", type=str,
                read=_date("--max-upload-date")),
    FieldOption("--classifier", BUILD, CLEAN + "classifier", "cleaning classifier: pnasnet5large, "
                "efficientnet_lite0_pypi, a timm name, or none"),
    FieldOption("--classifier-weights", BUILD, CLEAN + "weights",
                "checkpoint file for the classifier (default: its own weights)", type=str),
    FieldOption("--top-k", BUILD, CLEAN + "top_k", "keep when a class index is in the top-k"),
    FieldOption("--device", BUILD, CLEAN + "device", "cleaning device", choices=DEVICES),
    FieldOption("--batch-size", BUILD, CLEAN + "batch_size", "cleaning batch size"),
    FieldOption("--clean-workers", BUILD, CLEAN + "num_workers",
                "DataLoader workers decoding images"),
    FieldOption("--precision", BUILD, CLEAN + "precision", "cleaning precision (auto: bf16 on CUDA "
                "with an fp32 recheck near the top-k line)", choices=PRECISIONS),
    FieldOption("--download-attempts", BUILD, DOWNLOAD + "max_attempts",
                "builds that may try a photo that failed for a transient reason (429, 5xx, ...)"),
    FieldOption("--workers", BUILD, DOWNLOAD + "workers", "download threads (per process)"),
    FieldOption("--download-processes", BUILD, DOWNLOAD + "processes",
                "download processes, each decoding one photo at a time: about one per core"),
    FieldOption("--stages", BUILD, "stages", f"comma-separated subset of {','.join(STAGES)}",
                type=_names, show=_joined),
    FieldOption("--image-side", BUILD, DOWNLOAD + "max_side", "longest side (px) of the images "
                "the build stores, never enlarged (a study's [dataset] image_size is the crop it "
                "trains on)", aliases=("--image-size",)),
    FieldOption("--image-hosts", BUILD, DOWNLOAD + "image_hosts", "comma-separated hosts (host, "
                "host:port, *.domain) image URLs may name besides Flickr's; other URLs are "
                "recorded url_refused, never fetched", type=_names, show=_joined),
    FieldOption("--rate-limit", BUILD, "rate_limit", "Flickr API calls per hour"),
    FieldOption("--val-fraction", BUILD, "val_fraction", "share of each class held out as val"),
    FieldOption("--shard-samples", BUILD, "shard_samples", "samples per shard"),
    FieldOption("--group-by", BUILD, "group_by", "shard grouping", choices=GROUP_BY),
    FieldOption("--coord-decimals", BUILD, "coord_decimals",
                "decimals kept of exported coordinates"),
    FieldOption("--commit-every", BUILD, "commit_every", "records per catalog transaction"),
    FieldOption("--metadata", BUILD, "metadata", "search a local metadata dump instead of the API: "
                "YFCC100M metadata as TSV (or .bz2), the AWS SQLite file, JSON lines (or .gz) "
                "or parquet; a file or folder (no key needed)", type=str),
    FieldOption("--metadata-format", METADATA, "format", "format of --metadata: auto (told by each "
                f"file's content) or one of {', '.join(format_names())}"),
    FieldOption("--metadata-columns", METADATA, "columns", "field=column,... to map the dump's "
                "column names (flickr_mammal.dump.read.FIELDS)", type=str, show=_columns_text,
                read=parse_columns),
    FieldOption("--metadata-chunk-mb", METADATA, "chunk_bytes",
                "megabytes per scan chunk (SQLite: 2,048 rows a MB)", type=float,
                show=lambda n: n / _MB, read=lambda mb: int(mb * _MB)),
    FieldOption("--min-kept-fraction", BUILD, "min_kept_fraction", "fail (exit 1) when cleaning "
                "keeps less than this share of the images (a build keeping none always fails)"),
    FieldOption("--progress", BUILD, "progress", "progress bars (--no-progress: none)"),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pipelines.build_dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True,
                   help="output folder (catalog, images, shards, manifest, report)")
    p.add_argument("--api-key", default=None, help="Flickr API key (default: env FLICKR_API_KEY)")
    add_field_options(p, OPTIONS)
    p.add_argument("--log-level", default="INFO", help="logging level")
    return p


def api_key_from(args: argparse.Namespace) -> str:
    """``--api-key``, else the ``FLICKR_API_KEY`` environment variable, else empty."""
    return args.api_key if args.api_key is not None else os.environ.get("FLICKR_API_KEY", "")


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    """The BuildConfig for parsed arguments (raises ValueError / KeyError on bad values)."""
    values = field_values(args, OPTIONS, BuildConfig)
    dump = values.pop("metadata")
    metadata = None if dump is None else MetadataConfig(
        dump, **field_values(args, OPTIONS, MetadataConfig))
    return BuildConfig(out=args.out, api_key=api_key_from(args), metadata=metadata, **values)


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
            DumpScanMismatch, DumpFileError) as exc:  # before any work, or a whole bad file
        return _fail(str(exc), secret, EXIT_USAGE)
    except (FlickrError, BuildLocked, DownloadWorkerLost) as exc:
        return _fail(str(exc), secret, 1)
    for line in summary.lines():
        print(line)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
