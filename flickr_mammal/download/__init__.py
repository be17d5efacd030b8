"""Download stage: fetch every searched photo, shrink it, write it, record the outcome.

docs/reference.md section 1 (images stored at 300 px). Modelled on img2dataset's downloader: each
photo's failure is data (``status=DOWNLOAD_FAILED``, ``error`` a short reason such as
``http_404``, ``timeout``, ``too_large``, ``not_an_image``, ``truncated``, ``unavailable`` for
Flickr's redirect to its "photo unavailable" placeholder, ``redirect_refused``, ``bad_id`` for a
photo id that is not plain digits, which never becomes a path), never an exception. The HTTP
side (retries, per-host limits, size cap, deadline, redirect policy) lives in
:mod:`flickr_mammal.fetch`. Only problems of the machine itself (a failed disk write) propagate.

Threads wait on the network; few decode. Each of ``workers`` threads keeps its own
``requests.Session`` (connection pooling, keep-alive); a per-host semaphore caps how many
requests hit one server at once, held only while fetching. Decoding, resizing and encoding
release the GIL, but the Python glue around them does not, so at most ``decode_slots`` threads
per process decode at once (one by default: more only add GIL hand-offs between cores).
``processes=N`` runs N such processes (``spawn``), one per core or two, as img2dataset does
(:mod:`~flickr_mammal.download.procs`).

Output order is completion order, not input order. Input records are read lazily and at most
``max_in_flight`` (per process) are queued at any time, so memory stays bounded for 700K
records.

The modules, each depending only on those above it:

- :mod:`~flickr_mammal.download.config`: :class:`DownloadConfig`, the transient failure reasons;
- :mod:`~flickr_mammal.download.photo`: one photo (:func:`download_one`, :func:`adopt_written`);
- :mod:`~flickr_mammal.download.threads`: the threaded loop of one process;
- :mod:`~flickr_mammal.download.procs`: the fan-out to worker processes;
- :mod:`~flickr_mammal.download.stage`: :func:`download_records`, which picks one of the two;
- :mod:`~flickr_mammal.download.sweep`: :func:`remove_partial_writes`, run before the stage.

Every module logs under the logger ``flickr_mammal.download`` (its children).
"""

from flickr_mammal.download.config import (
    TRANSIENT_PATTERNS,
    TRANSIENT_REASONS,
    DownloadConfig,
    DownloadWorkerLost,
)
from flickr_mammal.download.photo import adopt_written, download_one
from flickr_mammal.download.stage import download_records
from flickr_mammal.download.sweep import remove_partial_writes

__all__ = [
    "TRANSIENT_PATTERNS", "TRANSIENT_REASONS", "DownloadConfig", "DownloadWorkerLost",
    "adopt_written", "download_one", "download_records", "remove_partial_writes",
]
