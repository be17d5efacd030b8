"""flickr_mammal.fetch: retry rules (server on 127.0.0.1 only).

The fetcher's other outcomes (status codes, size cap, timeouts) are checked end to end in
test_download.py.
"""

from __future__ import annotations

import pytest

from flickr_mammal.download import DownloadConfig
from flickr_mammal.fetch import Fetcher, FetchError
from tests.flickr_mammal.scripted_server import FakeSleep, Reply, ScriptedServer


def test_retry_after_longer_than_allowed_fails():
    config = DownloadConfig(max_retry_after=0.5, max_retries=3)
    with ScriptedServer({"/x": Reply(429, b"", (("Retry-After", "3600"),))}) as srv:
        with pytest.raises(FetchError) as info:
            Fetcher(config, FakeSleep()).fetch(srv.base + "/x")
        assert info.value.reason == "http_429" and srv.hits["/x"] == 1
