"""flickr_mammal.fetch: retry rules and Retry-After parsing (server on 127.0.0.1 only).

The fetcher's other outcomes (status codes, size cap, timeouts) are checked end to end in
test_download.py.
"""

from __future__ import annotations

import time

import pytest

from flickr_mammal.download import DownloadConfig
from flickr_mammal.fetch import Fetcher, FetchError, _retry_after
from tests.flickr_mammal.scripted_server import FakeSleep, Reply, ScriptedServer


def test_retry_after_longer_than_allowed_fails():
    config = DownloadConfig(max_retry_after=0.5, max_retries=3)
    with ScriptedServer({"/x": Reply(429, b"", (("Retry-After", "3600"),))}) as srv:
        with pytest.raises(FetchError) as info:
            Fetcher(config, FakeSleep()).fetch(srv.base + "/x")
        assert info.value.reason == "http_429" and srv.hits["/x"] == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
     ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_parsing(value, expected):
    assert _retry_after(value) == expected


def test_retry_after_http_date_in_the_future():
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 120))
    assert 100 < _retry_after(future) <= 121
