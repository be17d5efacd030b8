"""A small synthetic Flickr-Mammal for build tests, served by the fake Flickr (127.0.0.1 only).

Three classes x 16 photos. Per class, the first five photos carry faults (truncated JPEG, 404,
an HTML page, bad coordinates, no URL); on top of that one cat photo is also found by the dog
search (ambiguous), one zebra photo serves the same image as another (duplicate), and two dog
photos sit on null island and in Antarctica (kept, but never given a continent).

Expected outcome (hand-counted): 48 records; 15 download failures (3 x 5); 1 ambiguous;
1 duplicate; 31 kept (cat 10, dog 11, zebra 10), of which 2 unplaced.
"""

from __future__ import annotations

from typing import Any

from tests.flickr_mammal.fakeflickr import generate_photos

CLASSES = ("cat", "dog", "zebra")
LO, HI = 1_300_000_000, 1_600_000_000
API_KEY = "k3y-SECRET-4f9a"
FAULTS = ("truncated", "404", "html", "bad_geo", "no_url")
EXPECTED = {"records": 48, "download_failed": 15, "ambiguous": 1, "duplicate": 1, "kept": 31}
EXPECTED_KEPT_PER_CLASS = {"cat": 10, "dog": 11, "zebra": 10}


def photos() -> dict[str, list[dict[str, Any]]]:
    data = generate_photos(list(CLASSES), 16, seed=3, min_upload_date=LO, max_upload_date=HI,
                           faults=FAULTS)
    data["dog"].append(dict(data["cat"][10]))                      # ambiguous: cat and dog
    data["zebra"][15]["image"] = f"same_as:{data['zebra'][14]['id']}"  # duplicate bytes
    data["dog"][6].update(latitude=0.0, longitude=0.0)             # null island
    data["dog"][7].update(latitude=-75.0, longitude=0.0)           # Antarctica
    return data


def build_args(out, endpoint: str, *extra: str) -> list[str]:
    """Command-line arguments of a fast build against the fake server."""
    return ["--out", str(out), "--api-key", API_KEY, "--flickr-endpoint", endpoint,
            "--classes", ",".join(CLASSES), "--per-class", "100",
            "--min-upload-date", str(LO), "--max-upload-date", str(HI),
            "--rate-limit", "3600000", "--classifier", "none", "--workers", "4",
            "--val-fraction", "0.2", "--shard-samples", "4", "--no-progress", *extra]


def build_cli(out, *extra: str) -> int:
    """``pipelines.build_dataset`` of the synthetic set into ``out`` against a fresh fake
    Flickr; its exit code."""
    from pipelines.build_dataset import main as build_main
    from tests.flickr_mammal.fakeflickr import FakeFlickr

    with FakeFlickr(photos(), api_key=API_KEY) as fake:
        return build_main(build_args(out, fake.endpoint, *extra))


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.flickr_mammal.build_fixtures OUT``: build the synthetic set into OUT."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.flickr_mammal.build_fixtures OUT", file=sys.stderr)
        return 2
    return build_cli(args[0])


if __name__ == "__main__":
    raise SystemExit(main())
