"""Build Flickr-Mammal: search -> download -> clean -> geocode -> shard, resumable.

docs/reference.md §1-2. The stages talk only through the catalog (catalog.py): each reads
the records still in its input status, and commits its results in batches as they come out, so
a build killed at any point (``kill -9``, Ctrl-C, a crash) continues where it stopped when the same
command runs again: nothing done is fetched again, nothing is lost or doubled.

    stage     reads                           writes
    search    search slices not yet done      SEARCHED / AMBIGUOUS (+ DOWNLOAD_FAILED no_url,
                                              bad_geo) records, finished slices
    download  SEARCHED                        DOWNLOADED / DOWNLOAD_FAILED, then DUPLICATE
    clean     DOWNLOADED                      KEPT / REJECTED / CLEAN_FAILED
    geocode   KEPT, not yet geocoded          country, subcontinent, continent, geo_status
    shard     all KEPT (rewritten each run)   shards/, split and shard of each record

Every run ends by writing manifest.parquet, stats.json and report/ from the catalog.
The API key is checked before any work and is never stored, logged or written anywhere.
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm import tqdm

from flickr_mammal._util import batched
from flickr_mammal.build_guard import (
    CLASSES_DIGEST,
    SHARD_META,
    BuildFolderError,
    catalog_errors,
    check_output_folder,
    check_same_data,
    classes_file_digest,
    folder_error,
    shard_options,
)
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import CLASS_NAMES, ClassList, load_classes
from flickr_mammal.clean.config import CleanConfig, keep_all
from flickr_mammal.download import (
    TRANSIENT_PATTERNS,
    TRANSIENT_REASONS,
    DownloadConfig,
    download_records,
    remove_partial_writes,
)
from flickr_mammal.dump.read import MetadataConfig
from flickr_mammal.flickr_api import DEFAULT_ENDPOINT, FlickrClient
from flickr_mammal.geocode import geocode_records
from flickr_mammal.image_hosts import endpoint_host, host_port
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.search import SearchConfig, search_class
from flickr_mammal.shards import read_index, write_shards
from flickr_mammal.splits import TRAIN, VAL, assign_splits
from flickr_mammal.stats import compute_stats, write_stats

if TYPE_CHECKING:  # torch and timm load only when a build cleans with a classifier
    from flickr_mammal.clean.stage import Cleaner

log = logging.getLogger(__name__)

STAGES: tuple[str, ...] = ("search", "download", "clean", "geocode", "shard")
# CC 2.0 licenses, "no known copyright restrictions", US government work, CC0, public domain
# mark (docs/reference.md §2). The CC 4.0 ids (11+) are not listed in our sources: add them with
# --licenses once verified with flickr.photos.licenses.getInfo.
DEFAULT_LICENSES: tuple[int, ...] = tuple(range(1, 11))
FLICKR_START = 1072915200  # 2004-01-01 UTC: nothing on Flickr is older
LAST_DATE = 253402300799    # 9999-12-31 23:59:59 UTC: the last date datetime can show
GROUP_BY = ("continent", "subcontinent", "none")


class BuildLocked(RuntimeError):
    """Another build holds the output folder."""


def parse_date(text: str | int) -> int:
    """A date as unix seconds (UTC): ``YYYY-MM-DD`` or an integer number of seconds."""
    value = str(text).strip()
    if value.isdigit():
        if int(value) > LAST_DATE:
            raise ValueError(f"date {text!r}: unix seconds past 9999-12-31; use YYYY-MM-DD or "
                             "a smaller number of seconds")
        return int(value)
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"date {text!r}: use YYYY-MM-DD or unix seconds") from None
    return int(day.timestamp())


@dataclass(frozen=True)
class BuildConfig:
    """Everything a build needs. ``api_key`` is excluded from repr and from :meth:`to_meta`."""

    out: Path
    api_key: str = field(default="", repr=False)
    flickr_endpoint: str = DEFAULT_ENDPOINT
    classes: tuple[str, ...] = CLASS_NAMES
    per_class: int = 40_000
    licenses: tuple[int, ...] = DEFAULT_LICENSES
    min_upload_date: int = FLICKR_START
    max_upload_date: int | None = None   # None: the first run's day, remembered in the catalog
    rate_limit: float = 3600.0            # Flickr API calls per hour
    search: SearchConfig = field(default_factory=SearchConfig)  # slicing bounds per class
    stages: tuple[str, ...] = STAGES
    download: DownloadConfig = field(default_factory=lambda: DownloadConfig(processes=2))
    clean: CleanConfig = field(default_factory=CleanConfig)
    val_fraction: float = 0.05
    split_seed: int = 0
    shard_samples: int = 10_000
    shard_bytes: int = 1_000_000_000
    group_by: str = "continent"
    coord_decimals: int = 2
    commit_every: int = 256               # records per catalog transaction
    progress: bool = True
    metadata: MetadataConfig | None = None  # search a local metadata dump, not the API
    min_kept_fraction: float = 0.0        # a build keeping less of its cleaned images fails
    classes_file: str | None = None       # a class list CSV (classes.py); None: the 42 mammals

    def __post_init__(self) -> None:
        object.__setattr__(self, "out", Path(self.out))
        for name in ("min_upload_date", "max_upload_date"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= LAST_DATE:
                raise ValueError(f"{name}={value}: use a date from 1970-01-01 to 9999-12-31 "
                                 "(YYYY-MM-DD or unix seconds)")
        scheme, host, port = host_port(self.flickr_endpoint)
        if scheme not in ("http", "https") or not host or port is None:
            raise ValueError(f"--flickr-endpoint {self.flickr_endpoint!r}: use an http(s) URL "
                             f"such as {DEFAULT_ENDPOINT}")
        class_list = self.class_list
        if self.classes_file is not None and self.classes == CLASS_NAMES:  # "all" of the file
            object.__setattr__(self, "classes", class_list.names)
        object.__setattr__(self, "classes", tuple(class_list.get(c).name for c in self.classes))
        _check_cleanable(self)
        if not self.classes:
            raise ValueError("no classes chosen: give class names such as cat,dog (or all)")
        if self.max_upload_date is None and self.min_upload_date > time.time():
            raise ValueError(
                f"--min-upload-date {datetime.fromtimestamp(self.min_upload_date, UTC):%Y-%m-%d}"
                " is after today, the default --max-upload-date: give an earlier date")
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ValueError(f"stages {list(self.stages)}: choose from {', '.join(STAGES)}")
        if "search" in self.stages and not self.api_key.strip() and self.metadata is None:
            raise ValueError("no Flickr API key: pass --api-key or set FLICKR_API_KEY")
        checks = {
            "per_class": self.per_class >= 1, "rate_limit": self.rate_limit > 0,
            "licenses": bool(self.licenses) and min(self.licenses) >= 0,
            "val_fraction": 0.0 <= self.val_fraction < 1.0,
            "shard_samples": self.shard_samples >= 1, "shard_bytes": self.shard_bytes >= 1,
            "group_by": self.group_by in GROUP_BY,
            "coord_decimals": 0 <= self.coord_decimals <= 6,
            "commit_every": self.commit_every >= 1,
            "min_kept_fraction": 0.0 <= self.min_kept_fraction <= 1.0,
            "max_upload_date": (self.max_upload_date is None
                                or self.max_upload_date >= self.min_upload_date),
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid build option(s) {', '.join(bad)}: per_class >= 1, rate_limit > 0, "
                "licenses non-negative ids, 0 <= val_fraction < 1, shard sizes >= 1, group_by "
                f"in {GROUP_BY}, coord_decimals in 0..6, max date after min date, "
                "0 <= min_kept_fraction <= 1")

    @property
    def layout(self) -> Layout:
        return Layout.at(self.out)

    @property
    def class_list(self) -> ClassList:
        return load_classes(self.classes_file)

    def to_meta(self) -> dict[str, Any]:
        """The config as JSON-able data for the catalog, without the API key."""
        meta = asdict(self)
        meta.pop("api_key")
        meta["out"] = str(self.out)
        meta[CLASSES_DIGEST] = classes_file_digest(self.classes_file)  # content, not path
        return meta


def _check_cleanable(config: BuildConfig) -> None:
    """Cleaning judges a photo by its class's ImageNet indices, those of the 42 mammals."""
    if not config.clean.enabled or config.classes_file is None:
        return
    mammals = load_classes(None)
    odd = [c.name for c in map(config.class_list.get, config.classes)
           if c.name not in mammals.names or c.imagenet_indices != mammals.get(c.name)
           .imagenet_indices]
    if odd:
        raise ValueError(f"cleaning knows the ImageNet classes of the 42 mammals only, not of "
                         f"{', '.join(odd[:3])}: use --classifier none with this class file")


@dataclass(frozen=True)
class BuildSummary:
    """What a build run left in its folder."""

    out: Path
    stages_run: tuple[str, ...]
    status_counts: dict[str, int]
    kept: int
    shards: int
    stats: dict[str, Any]
    seconds: float
    problem: str = ""  # why the build failed though every stage ran (too few kept images)

    @property
    def ok(self) -> bool:
        return not self.problem

    def lines(self) -> list[str]:
        counts = ", ".join(f"{k} {v}" for k, v in self.status_counts.items())
        return [f"built {self.out} ({', '.join(self.stages_run) or 'no stages'}) "
                f"in {self.seconds:.1f}s", f"records: {counts or 'none'}",
                f"kept images: {self.kept} in {self.shards} shards",
                f"manifest: {Layout.at(self.out).manifest}",
                *([f"FAILED: {self.problem}"] if self.problem else [])]


def kept_problem(config: BuildConfig, counts: dict[str, int]) -> str:
    """Why a build that cleaned or sharded kept too few images ("" when it kept enough): a
    cleaning model that rejects everything must not end in "kept images: 0" and success."""
    if not {"clean", "shard"} & set(config.stages):
        return ""
    kept = counts.get(str(Status.KEPT), 0)
    judged = kept + sum(counts.get(str(s), 0) for s in (Status.REJECTED, Status.CLEAN_FAILED))
    if kept == 0:
        return (f"no image kept ({judged} cleaned, {counts.get(str(Status.REJECTED), 0)} "
                "rejected): check the classifier, its weights and --top-k")
    if kept < config.min_kept_fraction * judged:
        return (f"kept {kept} of {judged} cleaned images ({kept / judged:.1%}), under "
                f"--min-kept-fraction {config.min_kept_fraction:g}")
    return ""


def _bar(config: BuildConfig, desc: str, total: int | None, unit: str = "img") -> tqdm:
    return tqdm(desc=desc, total=total, unit=unit, disable=not config.progress or None)


def _commit_stream(catalog: Catalog, results: Iterable[PhotoRecord], every: int,
                   bar: tqdm) -> int:
    """Commit a stage's output in batches; on Ctrl-C the finished batch is still committed."""
    pending: list[PhotoRecord] = []
    done = 0
    try:
        for record in results:
            pending.append(record)
            bar.update(1)
            if len(pending) >= every:
                done += catalog.update(pending)
                pending = []
    finally:
        done += catalog.update(pending)
        bar.close()
    return done


# ---- stages ---------------------------------------------------------------------------------
def check_key(config: BuildConfig) -> FlickrClient:
    """A client whose key Flickr accepted (raises FlickrAuthError before any work)."""
    client = FlickrClient(config.api_key, endpoint=config.flickr_endpoint,
                          calls_per_hour=config.rate_limit)
    client.check_key()
    return client


def _search_window(config: BuildConfig, catalog: Catalog) -> tuple[int, int]:
    stored = catalog.get_meta("search_window")
    hi = config.max_upload_date
    if hi is None:  # remember "today" so a resumed build meets the same slices
        hi = stored[1] if stored else parse_date(datetime.now(UTC).strftime("%Y-%m-%d"))
    if config.min_upload_date > hi:
        raise BuildFolderError(f"--min-upload-date is after the remembered --max-upload-date "
                               f"{datetime.fromtimestamp(hi, UTC):%Y-%m-%d}; give an earlier "
                               "date or a later --max-upload-date")
    catalog.set_meta("search_window", [config.min_upload_date, hi])
    return config.min_upload_date, hi


def run_search(config: BuildConfig, catalog: Catalog, client: FlickrClient | None) -> None:
    lo, hi = _search_window(config, catalog)
    if config.metadata is not None:  # offline: the same candidates from a local dump
        from flickr_mammal.dump.search import search_dump

        search_dump(config.metadata, catalog, licenses=config.licenses,
                    classes=[config.class_list.get(n) for n in config.classes],
                    window=(lo, hi), per_class=config.per_class, progress=config.progress,
                    image_hosts=image_hosts(config),
                    any_host=config.download.any_image_host)
        return
    for name in config.classes:
        slices = catalog.slices_of(name)
        if sum(s.num_records for s in slices) >= config.per_class:
            log.info("search %s: done", name)
            continue
        catalog.drop_failed_slices(name)  # retried below (bad_answer, call_budget)
        # A slice cut short at per_class is not done, so a larger per_class resumes it.
        complete = [s for s in slices if s.complete]
        bar = _bar(config, f"search {name}", None, unit="photo")
        for result in search_class(
            client, config.class_list.get(name), licenses=config.licenses, min_upload_date=lo,
            max_upload_date=hi, per_class=config.per_class,
            done_slices={(name, s.min_date, s.max_date) for s in complete},
            found_before=sum(s.num_records for s in complete), config=config.search,
        ):
            catalog.add_slice(result)
            bar.update(len(result.records))
        bar.close()


def image_hosts(config: BuildConfig) -> tuple[str, ...]:
    """The hosts besides Flickr's that image URLs may name (flickr_mammal/image_hosts.py):
    ``download.image_hosts``, and for an API build its endpoint's own server, whose answers
    name the images (a dump's rows are held to Flickr's hosts and the named ones only)."""
    hosts = config.download.image_hosts
    if config.metadata is None and (own := endpoint_host(config.flickr_endpoint)):
        hosts = (*hosts, own)
    return hosts


def run_download(config: BuildConfig, catalog: Catalog) -> None:
    if config.layout.images.is_dir():  # a crash mid-write leaves temp files; the photos are
        removed = remove_partial_writes(config.layout.images)  # still SEARCHED, so refetched
        if removed:
            log.info("download: removed %d partial files left by an interrupted run", removed)
    retried = catalog.retry_failed_downloads(TRANSIENT_REASONS, TRANSIENT_PATTERNS,
                                             config.download.max_attempts)
    if retried:
        log.info("download: retrying %d photos that failed for transient reasons", retried)
    # The download stage draws its own bar: it also shows each host's request rate.
    results = download_records(
        catalog.records(Status.SEARCHED), config.layout,
        dataclasses.replace(config.download, progress=config.progress,
                            image_hosts=image_hosts(config)),
        total=catalog.count(Status.SEARCHED))
    _commit_stream(catalog, results, config.commit_every, tqdm(disable=True))
    marked = catalog.mark_duplicates()
    log.info("download: %d duplicate images marked", marked)


def run_clean(config: BuildConfig, catalog: Catalog, cleaner: Cleaner | None) -> None:
    catalog.mark_duplicates()  # in case a download run was cut before it got to this
    meta = {"classifier": config.clean.classifier, "top_k": config.clean.top_k}
    previous = catalog.get_meta("clean")
    if previous and previous != meta and catalog.count((Status.KEPT, Status.REJECTED)):
        log.warning("clean: earlier records were judged with %s; only new ones use %s "
                    "(clean_score/clean_rank let you re-filter)", previous, meta)
    catalog.set_meta("clean", meta)
    todo = catalog.records(Status.DOWNLOADED)
    if cleaner is None:
        results = keep_all(todo)
    elif len(gpus := _clean_gpus(config.clean, cleaner)) > 1:
        from flickr_mammal.clean.parallel import clean_on_devices  # torch: only to clean

        log.info("clean: one process per GPU (%s)", ", ".join(gpus))
        results = clean_on_devices(todo, config.layout.image_path, config.clean, gpus)
    else:
        from flickr_mammal.clean.stage import clean_records  # torch: imported only to clean

        results = clean_records(todo, config.layout.image_path, cleaner)
    bar = _bar(config, "clean", catalog.count(Status.DOWNLOADED))
    _commit_stream(catalog, results, config.commit_every, bar)


def _clean_gpus(config: CleanConfig, cleaner: Cleaner) -> list[str]:
    """The GPUs to clean on in parallel: every visible one, when cleaning runs on CUDA."""
    if not config.multi_gpu or cleaner.device.type != "cuda" or ":" in config.device:
        return []
    from flickr_mammal.clean.parallel import visible_gpus

    return visible_gpus()


def run_geocode(config: BuildConfig, catalog: Catalog, chunk: int = 20_000) -> None:
    bar = _bar(config, "geocode", catalog.count(Status.KEPT, ungeocoded=True))

    def results() -> Iterator[PhotoRecord]:
        for part in batched(catalog.records(Status.KEPT, ungeocoded=True), chunk):
            yield from geocode_records(list(part))

    _commit_stream(catalog, results(), chunk, bar)


def run_shard(config: BuildConfig, catalog: Catalog) -> pd.DataFrame:
    """Rewrite all shards from the KEPT records (byte-reproducible, so reruns are harmless)."""
    layout = config.layout
    kept = assign_splits(list(catalog.records(Status.KEPT)), val_fraction=config.val_fraction,
                         seed=config.split_seed)
    group_by = None if config.group_by == "none" else config.group_by

    def read_image(record: PhotoRecord) -> bytes:
        return layout.image_path(record.photo_id).read_bytes()

    index = pd.concat([
        write_shards(kept, read_image, layout.shards, split=split, group_by=group_by,
                     max_samples=config.shard_samples, max_bytes=config.shard_bytes,
                     coord_decimals=config.coord_decimals, progress=config.progress)
        for split in (TRAIN, VAL)
    ], ignore_index=True)
    shard_of = dict(zip(index["photo_id"], index["shard"], strict=True))
    # An image gone from disk goes back to be downloaded again on the next run.
    updated = [r.evolve(shard=shard_of[r.photo_id]) if r.photo_id in shard_of else
               r.evolve(status=Status.SEARCHED, split="", shard="", sha256="", geo_status="")
               for r in kept]
    for part in batched(updated, 10_000):
        catalog.update(part)
    catalog.set_meta(SHARD_META, shard_options(config.to_meta()))
    missing = len(kept) - len(shard_of)
    if missing:
        log.warning("shard: %d kept images could not be read; they will be downloaded again "
                    "on the next run", missing)
    return index


# ---- wiring ---------------------------------------------------------------------------------
@contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """One build per folder at a time (the lock dies with the process, even on kill -9)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = open(out / ".build.lock", "w")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise folder_error(out, exc) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLocked(f"another build is running in {out}; wait for it or stop it")\
                from None
        yield


def _read_shard_index(layout: Layout) -> pd.DataFrame | None:
    try:
        return read_index(layout.shards)
    except FileNotFoundError:
        return None


def finish(config: BuildConfig, catalog: Catalog,
           shard_index: pd.DataFrame | None) -> dict[str, Any]:
    """Write manifest.parquet, stats.json and report/ from the catalog's current state."""
    from flickr_mammal.report import write_report  # matplotlib: not needed to start a build

    layout = config.layout
    manifest = catalog.export_manifest(layout.manifest, coord_decimals=config.coord_decimals)
    stats = compute_stats(catalog, shard_index)
    write_stats(stats, layout.stats)
    write_report(manifest, layout.report)
    return stats


def build(config: BuildConfig,
          cleaner_factory: Callable[[CleanConfig], Cleaner] | None = None) -> BuildSummary:
    """Run the configured stages in order, resuming whatever an earlier run left undone.

    ``cleaner_factory`` defaults to ``clean.Cleaner.load`` (torch is imported only then)."""
    start = time.monotonic()
    check_output_folder(config.out)
    searching = "search" in config.stages and config.metadata is None
    client = check_key(config) if searching else None
    cleaner = None
    if "clean" in config.stages and config.clean.enabled:
        if cleaner_factory is None:
            from flickr_mammal.clean.stage import Cleaner

            cleaner_factory = Cleaner.load
        cleaner = cleaner_factory(config.clean)  # fails before any work when weights are missing
    with _exclusive(config.out), catalog_errors(config.layout.catalog), \
            Catalog.open(config.layout.catalog) as catalog:
        check_same_data(catalog, config.to_meta(), config.stages, config.layout.shards)
        catalog.set_meta("config", config.to_meta())
        bad = catalog.mark_bad_ids()  # ids an older build let in: never a path (records.py)
        if bad:
            log.warning("%d records have photo ids that are not Flickr ids: recorded as "
                        "bad_id", bad)
        shard_index = None
        stages: dict[str, Callable[[], object]] = {
            "search": lambda: run_search(config, catalog, client),
            "download": lambda: run_download(config, catalog),
            "clean": lambda: run_clean(config, catalog, cleaner),
            "geocode": lambda: run_geocode(config, catalog),
            "shard": lambda: run_shard(config, catalog),
        }
        for stage in STAGES:  # always in pipeline order, whatever order --stages gave
            if stage in config.stages:
                log.info("stage %s", stage)
                result = stages[stage]()
                if stage == "shard":
                    shard_index = result
        shard_index = shard_index if shard_index is not None else _read_shard_index(config.layout)
        stats = finish(config, catalog, shard_index)
    # stats["status"] is catalog.counts(): {status: {failure reason: n}}
    counts = {s: sum(r.values()) for s, r in stats["status"].items()}
    return BuildSummary(
        out=config.out, stages_run=tuple(s for s in STAGES if s in config.stages),
        status_counts=counts, kept=counts.get(str(Status.KEPT), 0),
        shards=0 if shard_index is None else int(shard_index["shard"].nunique()),
        stats=stats, seconds=time.monotonic() - start, problem=kept_problem(config, counts),
    )
