"""The download stage's entry point: :func:`download_records` runs the threaded loop in this
process, or fans the records out to worker processes (``DownloadConfig.processes > 1``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from flickr_mammal.download.config import DownloadConfig
from flickr_mammal.download.procs import download_in_processes
from flickr_mammal.download.threads import download_batches
from flickr_mammal.fetch import Fetcher
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord


def download_records(
    records: Iterable[PhotoRecord],
    layout: Layout,
    config: DownloadConfig | None = None,
    *,
    fetcher: Fetcher | None = None,
    total: int | None = None,
) -> Iterator[PhotoRecord]:
    """Download every record's ``url``; yield each record, evolved, as it finishes.

    ``total`` (the number of records, when known) only sizes the progress bar, which also
    shows each host's current request rate.

    Yields records in completion order (not input order). Per-photo problems come back as
    ``Status.DOWNLOAD_FAILED`` records; an ``OSError`` writing an image propagates.
    """
    config = config or DownloadConfig()
    if config.processes > 1:
        if fetcher is not None:
            raise ValueError("a custom fetcher works only with DownloadConfig(processes=1)")
        yield from download_in_processes(records, layout, config, total)
        return
    batches = download_batches(records, layout, config, fetcher, total, batch=1)
    try:
        for batch in batches:
            yield from batch
    finally:
        batches.close()  # now, not at garbage collection: stops the threads of an early stop

