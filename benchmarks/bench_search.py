"""API calls spent by date slicing, against the limit: one call per 250 results.

The Flickr budget is 3,600 calls/hour, so calls (not CPU) are what a search costs. Slicing past
the 4,000 cap spends extra calls on probes (windows that turn out to hold > 4,000 and are split,
and page-1 answers of empty windows). This runs ``search_class`` against the local fake Flickr
with the same photos spread over the upload-date window in three ways (uniform, and skewed to
recent years as on Flickr) and prints calls / lower bound.

    python benchmarks/bench_search.py [--photos 20000]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.flickr_mammal

from flickr_mammal.classes import get_class  # noqa: E402
from flickr_mammal.flickr_api import FlickrClient  # noqa: E402
from flickr_mammal.search import PER_PAGE, search_class  # noqa: E402
from tests.flickr_mammal.fakeflickr import FakeFlickr, generate_photos  # noqa: E402

LO, HI = 1_100_000_000, 1_700_000_000  # 2004 .. 2023


def run(photos: int, beta: float | None) -> tuple[int, int, int]:
    """(photos found, slices, calls) for one upload-date distribution."""
    data = generate_photos(["cat"], photos, min_upload_date=LO, max_upload_date=HI)
    if beta is not None:  # density rising towards HI
        rng = np.random.default_rng(0)
        for p in data["cat"]:
            p["dateupload"] = str(int(HI - (HI - LO) * rng.beta(1, beta)))
    with FakeFlickr(data) as fake:
        client = FlickrClient("testkey", endpoint=fake.endpoint, calls_per_hour=1e9)
        slices = list(search_class(client, get_class("cat"), licenses=range(11),
                                   min_upload_date=LO, max_upload_date=HI, per_class=10**9))
    return sum(len(s.records) for s in slices), len(slices), client.calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(f"{'upload dates':<24}{'found':>8}{'slices':>8}{'calls':>7}{'limit':>7}{'ratio':>7}")
    for label, beta in (("uniform", None), ("recent-heavy beta(1,6)", 6.0),
                        ("recent-heavy beta(1,40)", 40.0)):
        found, slices, calls = run(args.photos, beta)
        limit = math.ceil(found / PER_PAGE)
        print(f"{label:<24}{found:>8}{slices:>8}{calls:>7}{limit:>7}{calls / limit:>7.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
