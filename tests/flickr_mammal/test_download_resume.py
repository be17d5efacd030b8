"""Builds that resume downloads: transient failures retried by later builds (a bounded number
of times), permanent ones never; images a killed run wrote are adopted, not fetched again."""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from pathlib import Path

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.clean.stage import CleanConfig
from flickr_mammal.download import (
    TRANSIENT_PATTERNS,
    TRANSIENT_REASONS,
    DownloadConfig,
    download_records,
)
from flickr_mammal.imaging import process_image
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status
from tests.flickr_mammal import sample_images as s
from tests.flickr_mammal.scripted_server import RateLimitedServer, Reply, ScriptedServer


def _record(photo_id: str, url: str) -> PhotoRecord:
    return PhotoRecord(photo_id=photo_id, owner="o", class_name="cat", label=7,
                       latitude=1.0, longitude=2.0, url=url)


def _config(out: Path, **download) -> BuildConfig:
    return BuildConfig(out=out, stages=("download",), clean=CleanConfig("none"), progress=False,
                       download=DownloadConfig(workers=2, processes=1, max_retries=0,
                                               timeout=2.0, any_image_host=True, **download))


def _seed(out: Path, records: list[PhotoRecord]) -> None:
    with Catalog.open(Layout.at(out).catalog) as catalog:
        catalog.update(records)


def _by_id(out: Path) -> dict[str, PhotoRecord]:
    with Catalog.open(Layout.at(out).catalog) as catalog:
        return {r.photo_id: r for r in catalog.records()}


def test_reasons_split_into_transient_and_permanent(tmp_path):
    transient = ["http_429", "http_503", "http_500", "http_599", "timeout", "connection_error",
                 "http_408"]
    permanent = ["http_404", "http_410", "http_403", "not_an_image", "too_many_pixels",
                 "bad_id", "redirect_refused", "url_refused", "unavailable", "truncated",
                 "http_5000", ""]
    failed = [_record(str(1000 + i), "http://x/1.jpg").evolve(
        status=Status.DOWNLOAD_FAILED, error=reason) for i, reason in enumerate(transient
                                                                               + permanent)]
    with Catalog.open(tmp_path / "catalog.sqlite") as catalog:
        catalog.update(failed)
        # the rule the build applies (flickr_mammal/build.py), in SQL over the catalog
        assert catalog.retry_failed_downloads(TRANSIENT_REASONS, TRANSIENT_PATTERNS, 3) == 7
        retried = {r.photo_id for r in catalog.records() if r.status == Status.SEARCHED}
    assert retried == {r.photo_id for r in failed[:len(transient)]}


def test_transient_failures_are_retried_by_the_next_builds_up_to_max_attempts(tmp_path):
    routes = {
        "/flaky.jpg": [Reply(503, b"busy"), Reply(body=s.jpeg_ok())],
        "/throttled.jpg": [Reply(429, b""), Reply(body=s.china_jpeg())],
        "/gone.jpg": Reply(404, b"gone"),
        "/html.jpg": Reply(body=s.HTML),
        "/down.jpg": Reply(503, b"down"),
    }
    with ScriptedServer(routes) as srv:
        ids = {name: str(100 + i) for i, name in enumerate(routes)}
        _seed(tmp_path, [_record(ids[p], srv.base + p) for p in routes])
        for _ in range(4):  # max_attempts=3: the fourth build asks nothing of the server
            build(_config(tmp_path))
        hits = dict(srv.hits)
    out = _by_id(tmp_path)
    assert hits == {"/flaky.jpg": 2, "/throttled.jpg": 2, "/gone.jpg": 1, "/html.jpg": 1,
                    "/down.jpg": 3}
    assert out[ids["/flaky.jpg"]].status is Status.DOWNLOADED
    assert out[ids["/throttled.jpg"]].status is Status.DOWNLOADED
    assert out[ids["/flaky.jpg"]].attempts == 2
    assert (out[ids["/gone.jpg"]].error, out[ids["/gone.jpg"]].attempts) == ("http_404", 1)
    assert out[ids["/html.jpg"]].error == "not_an_image"
    assert (out[ids["/down.jpg"]].status, out[ids["/down.jpg"]].error,
            out[ids["/down.jpg"]].attempts) == (Status.DOWNLOAD_FAILED, "http_503", 3)


def test_a_catalog_without_attempts_gains_the_column_and_retries(tmp_path):
    with ScriptedServer({"/a.jpg": Reply(body=s.jpeg_ok())}) as srv:
        _seed(tmp_path, [_record("7", srv.base + "/a.jpg").evolve(
            status=Status.DOWNLOAD_FAILED, error="timeout")])
        conn = sqlite3.connect(Layout.at(tmp_path).catalog)  # as an older build left it
        conn.execute("ALTER TABLE records DROP COLUMN attempts")
        conn.commit()
        conn.close()
        build(_config(tmp_path))
        assert srv.hits["/a.jpg"] == 1
    assert _by_id(tmp_path)["7"].status is Status.DOWNLOADED


def test_images_a_killed_run_wrote_are_adopted_not_fetched(tmp_path):
    layout = Layout.at(tmp_path)
    images = {str(200 + i): data for i, data in enumerate(
        [s.jpeg_ok(), s.china_jpeg(), s.grey_jpeg(), s.rotated_jpeg(6)])}
    routes = {f"/{i}.jpg": Reply(body=data) for i, data in images.items()}
    with ScriptedServer(routes) as srv:
        _seed(tmp_path, [_record(i, f"{srv.base}/{i}.jpg") for i in images])
        written = {}
        for i, data in list(images.items())[:3]:  # the killed run wrote these, recorded none
            jpeg = process_image(data).jpeg
            path = layout.image_path(i)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg)
            written[i] = jpeg
        corrupt = "202"  # cut short (a crash of the machine itself): fetched again
        layout.image_path(corrupt).write_bytes(written.pop(corrupt)[:500])
        build(_config(tmp_path))
        hits = dict(srv.hits)
    assert hits == {f"/{corrupt}.jpg": 1, "/203.jpg": 1}
    out = _by_id(tmp_path)
    for i in images:
        data = layout.image_path(i).read_bytes()
        assert out[i].status is Status.DOWNLOADED
        assert out[i].sha256 == hashlib.sha256(data).hexdigest()
    for i, jpeg in written.items():
        assert out[i].attempts == 0 and layout.image_path(i).read_bytes() == jpeg
        assert max(out[i].width, out[i].height) == 300


def test_a_rate_limited_host_slows_the_download_instead_of_failing_photos(tmp_path):
    """The server allows 40 requests/s; 4 threads on 127.0.0.1 ask hundreds: the adaptive
    rate brings them under the limit after a few 429s, and no photo fails for 429."""
    n = 120
    routes = {f"/{i}.jpg": Reply(body=s.jpeg_ok()) for i in range(n)}
    with RateLimitedServer(routes, per_second=40) as srv:
        records = [_record(str(1000 + i), f"{srv.base}/{i}.jpg") for i in range(n)]
        config = DownloadConfig(any_image_host=True,
                                workers=4, max_retries=3, backoff_base=0.05, timeout=2.0)
        out = list(download_records(records, Layout.at(tmp_path), config))
        throttled = srv.throttled
    assert Counter(r.error for r in out) == {"": n}
    assert throttled <= 3 * config.workers  # without pacing: hundreds, and failed photos
