"""flickr_mammal.fetch: retry rules, the per-attempt deadline, the redirect policy (127.0.0.1).

The fetcher's other outcomes (status codes, size cap, timeouts) are checked end to end in
test_download.py.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from flickr_mammal.download import DownloadConfig, download_records
from flickr_mammal.fetch import FetchConfig, Fetcher, FetchError, redirect_allowed
from flickr_mammal.image_hosts import host_allowed, strip_credentials
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status
from tests.flickr_mammal import sample_images as s
from tests.flickr_mammal.scripted_server import FakeSleep, Reply, ScriptedServer


def test_retry_after_longer_than_allowed_fails():
    config = FetchConfig(any_image_host=True, max_retry_after=0.5, max_retries=3)
    with ScriptedServer({"/x": Reply(429, b"", (("Retry-After", "3600"),))}) as srv:
        with pytest.raises(FetchError) as info:
            Fetcher(config, FakeSleep()).fetch(srv.base + "/x")
        assert info.value.reason == "http_429" and srv.hits["/x"] == 1


def test_fetch_owns_its_config_and_does_not_import_download():
    assert isinstance(DownloadConfig(), FetchConfig)
    code = "import sys, flickr_mammal.fetch; print('flickr_mammal.download' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"  # no download <-> fetch import cycle


# ---- the deadline -----------------------------------------------------------------------------
def test_a_trickled_body_fails_at_the_deadline_not_at_its_end():
    # 40 bytes declared, one every 0.5 s: 20 s to send; each read arrives well within `timeout`.
    config = FetchConfig(any_image_host=True, total_timeout=1.5, timeout=5.0, max_retries=1)
    sleep = FakeSleep()
    with ScriptedServer({"/drip.jpg": Reply(body=b"x" * 40, trickle=0.5)}) as srv:
        start = time.monotonic()
        with pytest.raises(FetchError) as info:
            Fetcher(config, sleep).fetch(srv.base + "/drip.jpg")
        elapsed = time.monotonic() - start
    assert info.value.reason == "timeout"
    assert srv.hits["/drip.jpg"] == 2 and len(sleep.calls) == 1  # retried once, then gave up
    assert elapsed < 10  # two attempts of 1.5 s, far below the 2 x 20 s of the trickle


def test_a_trickled_body_is_a_recorded_timeout_in_the_download(tmp_path):
    config = DownloadConfig(any_image_host=True, total_timeout=1.0, max_retries=0, workers=1)
    with ScriptedServer({"/drip.jpg": Reply(body=b"x" * 40, trickle=0.5)}) as srv:
        record = PhotoRecord("17", "o", "cat", 7, 1.0, 2.0, url=srv.base + "/drip.jpg")
        (out,) = download_records([record], Layout.at(tmp_path), config)
    assert (out.status, out.error) == (Status.DOWNLOAD_FAILED, "timeout")


# ---- redirects --------------------------------------------------------------------------------
def test_redirect_to_another_port_is_refused_and_never_requested():
    with ScriptedServer({"/ok.jpg": Reply(body=s.jpeg_ok())}) as other:
        routes = {"/a.jpg": Reply(302, b"", (("Location", other.base + "/ok.jpg"),)),
                  "/b.jpg": Reply(307, b"", (("Location", other.base + "/ok.jpg"),)),
                  "/local.jpg": Reply(301, b"", (("Location", "/ok.jpg"),)),
                  "/ok.jpg": Reply(body=b"same server")}
        with ScriptedServer(routes) as srv:
            fetcher = Fetcher(FetchConfig(any_image_host=True, max_retries=0))
            for path in ("/a.jpg", "/b.jpg"):
                with pytest.raises(FetchError) as info:
                    fetcher.fetch(srv.base + path)
                assert info.value.reason == "redirect_refused"
            assert other.hits["/ok.jpg"] == 0
            assert fetcher.fetch(srv.base + "/local.jpg") == b"same server"  # same host: fine


def test_redirect_to_an_allowed_host_is_followed():
    with ScriptedServer({"/ok.jpg": Reply(body=b"cdn bytes")}) as other:
        port = other.base.rsplit(":", 1)[1]
        routes = {"/a.jpg": Reply(302, b"", (("Location", other.base + "/ok.jpg"),))}
        with ScriptedServer(routes) as srv:
            origin = srv.base.split("//", 1)[1]  # 127.0.0.1:PORT: the URL's own host
            fetcher = Fetcher(FetchConfig(max_retries=0,
                                          image_hosts=(f"127.0.0.1:{port}", origin)))
            assert fetcher.fetch(srv.base + "/a.jpg") == b"cdn bytes"
        assert other.hits["/ok.jpg"] == 1


def test_a_refused_redirect_is_a_recorded_failure(tmp_path):
    with ScriptedServer({"/ok.jpg": Reply(body=s.jpeg_ok())}) as other:
        routes = {"/a.jpg": Reply(302, b"", (("Location", other.base + "/ok.jpg"),))}
        with ScriptedServer(routes) as srv:
            record = PhotoRecord("18", "o", "cat", 7, 1.0, 2.0, url=srv.base + "/a.jpg")
            config = DownloadConfig(any_image_host=True, workers=1)
            (out,) = download_records([record], Layout.at(tmp_path), config)
    assert (out.status, out.error) == (Status.DOWNLOAD_FAILED, "redirect_refused")
    assert not Layout.at(tmp_path).image_path("18").exists()


def test_redirect_loops_end():
    with ScriptedServer({"/loop.jpg": Reply(302, b"", (("Location", "/loop.jpg"),))}) as srv:
        with pytest.raises(FetchError) as info:
            Fetcher(FetchConfig(any_image_host=True, max_retries=0)).fetch(srv.base + "/loop.jpg")
    assert info.value.reason == "too_many_redirects" and srv.hits["/loop.jpg"] == 6


@pytest.mark.parametrize(("target", "extra", "allowed"), [
    ("https://live.staticflickr.com/65535/1_a_z.jpg", (), True),
    ("https://www.flickr.com/x.jpg", (), True),
    ("https://flickr.com/x.jpg", (), True),
    ("https://live.staticflickr.com:8443/x.jpg", (), False),   # Flickr hosts: default ports
    ("https://staticflickr.com.evil.org/x.jpg", (), False),
    ("https://evilflickr.com/x.jpg", (), False),
    ("https://cdn.example.org/x.jpg", (), False),
    ("https://cdn.example.org/x.jpg", ("cdn.example.org",), True),
    ("https://a.example.org/x.jpg", ("*.example.org",), True),
    ("http://127.0.0.1:9000/x.jpg", ("127.0.0.1:9000",), True),
    ("http://127.0.0.1:9001/x.jpg", ("127.0.0.1:9000",), False),
    ("https://farm1.static.flickr.com/x.jpg", (), True),
    ("https://origin.test/other.jpg", (), True),                # the original host itself
    ("http://origin.test:8080/other.jpg", (), False),           # ... but not another port
    ("file:///etc/passwd", (), False),
    ("ftp://live.staticflickr.com/x.jpg", (), False),
])
def test_redirect_policy(target, extra, allowed):
    assert redirect_allowed("https://origin.test/x.jpg", target, extra) is allowed


def test_image_hosts_are_checked():
    with pytest.raises(ValueError, match="image_hosts"):
        FetchConfig(image_hosts=("https://cdn.example.org/",))


# ---- hosts ------------------------------------------------------------------------------------
def test_a_url_off_the_image_hosts_is_refused_and_never_requested(tmp_path):
    """A local "internal" server that counts hits: a URL naming it is never fetched."""
    with ScriptedServer({"/internal-admin/x.jpg": Reply(body=s.jpeg_ok())}) as internal:
        url = internal.base + "/internal-admin/x.jpg"
        with pytest.raises(FetchError) as info:
            Fetcher(FetchConfig(max_retries=0)).fetch(url)
        assert info.value.reason == "url_refused"
        # credentials are refused even on an allowed host
        host = internal.base.split("//", 1)[1]
        config = FetchConfig(max_retries=0, image_hosts=(host,))
        with pytest.raises(FetchError, match="url_refused"):
            Fetcher(config).fetch(url.replace("//", "//user:pw@", 1))
        record = PhotoRecord("19", "o", "cat", 7, 1.0, 2.0, url=url)
        (out,) = download_records([record], Layout.at(tmp_path), DownloadConfig(workers=1))
        assert (out.status, out.error) == (Status.DOWNLOAD_FAILED, "url_refused")
        assert internal.hits["/internal-admin/x.jpg"] == 0
        assert Fetcher(config).fetch(url) == s.jpeg_ok()  # named in image_hosts: fetched
        assert internal.hits["/internal-admin/x.jpg"] == 1


@pytest.mark.parametrize(("url", "extra", "allowed"), [
    ("https://live.staticflickr.com/65535/1_a_z.jpg", (), True),
    ("http://farm1.staticflickr.com/1/2_a.jpg", (), True),
    ("https://user:pw@live.staticflickr.com/1/2_a.jpg", (), False),
    ("http://127.0.0.1:9000/x.jpg", (), False),
    ("http://127.0.0.1:9000/x.jpg", ("127.0.0.1:9000",), True),
    ("file:///etc/passwd", (), False),
    ("gopher://live.staticflickr.com/x", (), False),
    ("http://[::1/x.jpg", (), False),
    ("", (), False),
])
def test_image_host_policy(url, extra, allowed):
    assert host_allowed(url, extra) is allowed


def test_strip_credentials():
    assert strip_credentials("https://u:p@live.staticflickr.com/1/2.jpg") == \
        "https://live.staticflickr.com/1/2.jpg"
    assert strip_credentials("https://live.staticflickr.com/a@b.jpg") == \
        "https://live.staticflickr.com/a@b.jpg"
