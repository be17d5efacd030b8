"""The download stage's options (:class:`DownloadConfig`), which failures a later build fetches
again, and the error of a lost worker process. Imported by every other module of the stage."""

from __future__ import annotations

from dataclasses import dataclass

from flickr_mammal.fetch import FetchConfig
from flickr_mammal.imaging import DEFAULT_MAX_PIXELS


class DownloadWorkerLost(RuntimeError):
    """A download worker process died before reporting its photos (resuming fetches them)."""


@dataclass(frozen=True)
class DownloadConfig(FetchConfig):
    """How to fetch (the :class:`~flickr_mammal.fetch.FetchConfig` fields: timeouts, retries,
    size cap, redirect allow-list) and how to shrink photos. Times are seconds."""

    workers: int = 32                 # threads (per process): fetch + decode + write
    processes: int = 1                # >1: that many worker processes ("spawn"), for more cores
    decode_slots: int = 1             # images decoded at once per process (module docstring)
    max_side: int = 300
    quality: int = 90
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_in_flight: int = 0            # records queued in the pool; 0 = 4 x workers
    progress: bool = False            # tqdm bar over finished records
    # Builds that may try one photo: a transient failure (TRANSIENT_REASONS) is fetched again
    # by the next build until the photo has had this many attempts; permanent ones never are.
    max_attempts: int = 3
    adopt: bool = True                # a SEARCHED photo's image already on disk is checked and
    #                                   kept instead of fetched (written by a killed run)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("workers", "processes", "decode_slots", "max_side", "max_pixels",
                     "max_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"DownloadConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_in_flight < 0:
            raise ValueError(f"DownloadConfig.max_in_flight must be >= 0, got "
                             f"{self.max_in_flight}")
        if not 1 <= self.quality <= 95:
            raise ValueError(f"DownloadConfig.quality must be in 1..95, got {self.quality}")

    @property
    def in_flight(self) -> int:
        return self.max_in_flight or 4 * self.workers


# Failures worth fetching again in a later build: the server was overloaded or the network
# failed. Anything else (http_404/410/403, not_an_image, too_many_pixels, bad_id,
# redirect_refused, unavailable, truncated, ...) is a property of the photo: never retried.
TRANSIENT_REASONS: tuple[str, ...] = ("http_408", "http_429", "timeout", "connection_error")
TRANSIENT_PATTERNS: tuple[str, ...] = ("http_5[0-9][0-9]",)  # SQLite GLOB: every 5xx