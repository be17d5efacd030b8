"""FlickrClient against the local fake server: errors, retries, rate limit, key hygiene."""

from __future__ import annotations

import socket
import threading
import time
import traceback

import numpy as np
import pytest
import requests

from flickr_mammal.flickr_api import (
    FlickrAuthError,
    FlickrBadAnswer,
    FlickrClient,
    FlickrError,
    FlickrUnavailableError,
    TokenBucket,
    check_search_answer,
    redact,
)
from tests.flickr_mammal.fakeflickr import FakeFlickr, generate_photos
from tests.flickr_mammal.scripted_server import Reply, ScriptedServer

KEY = "SECRETKEY123"
FAST = 3_600_000  # calls/hour high enough that the rate limiter never waits in these tests


@pytest.fixture
def fake():
    with FakeFlickr(generate_photos(["cat"], 5), api_key=KEY) as server:
        yield server


def client_for(fake: FakeFlickr, sleeps: list[float] | None = None, **kw) -> FlickrClient:
    record = sleeps.append if sleeps is not None else (lambda s: None)
    kw.setdefault("calls_per_hour", FAST)
    return FlickrClient(KEY, endpoint=fake.endpoint, sleep=record, seed=0, **kw)


def test_search_sends_json_params_and_returns_photos(fake):
    photos = client_for(fake).search(text="cat", has_geo=1, min_upload_date=0, per_page=3)
    assert photos["total"] == 5 and len(photos["photo"]) == 3 and photos["pages"] == 2
    sent = fake.search_log[0]
    assert sent["method"] == "flickr.photos.search"
    assert (sent["format"], sent["nojsoncallback"], sent["text"]) == ("json", "1", "cat")


def test_rejected_key_raises_auth_error_before_any_search(fake):
    client = FlickrClient("wrong-key-77", endpoint=fake.endpoint, sleep=lambda s: None)
    with pytest.raises(FlickrAuthError) as info:
        client.check_key()
    msg = str(info.value)
    assert info.value.code == 100 and "code 100" in msg and "--api-key" in msg
    assert "wrong-key-77" not in msg
    assert client.calls == 1  # fatal: no retry
    assert fake.calls["flickr.photos.search"] == 0


def test_missing_key_is_a_clear_error():
    with pytest.raises(FlickrAuthError, match="FLICKR_API_KEY"):
        FlickrClient("  ")


def test_other_fail_code_raises_flickr_error(fake):
    fake.inject(stat_fail=[(18, "Illogical arguments")])
    with pytest.raises(FlickrError) as info:
        client_for(fake).search(text="cat")
    assert info.value.code == 18 and not isinstance(info.value, FlickrAuthError)


def test_transient_fail_code_is_retried(fake):
    fake.inject(stat_fail=[(105, "Service currently unavailable")])
    sleeps: list[float] = []
    assert client_for(fake, sleeps).search(text="cat")["total"] == 5
    assert len(sleeps) == 1 and fake.calls["api"] == 2


def test_429_honours_retry_after(fake):
    fake.inject(http_429=2, retry_after="7")
    sleeps: list[float] = []
    assert client_for(fake, sleeps).search(text="cat")["total"] == 5
    assert sleeps == [7.0, 7.0]
    assert fake.calls["http_429"] == 2


def test_429_asking_for_too_long_a_wait_fails_instead_of_sleeping(fake):
    fake.inject(http_429=1, retry_after="86400")
    sleeps: list[float] = []
    with pytest.raises(FlickrUnavailableError, match="asked to wait 86400 s"):
        client_for(fake, sleeps, max_retry_after=3600).search(text="cat")
    assert sleeps == [] and fake.calls["http_429"] == 1


def test_5xx_retried_with_exponential_backoff_and_jitter(fake):
    fake.inject(http_500=3)
    sleeps: list[float] = []
    client = client_for(fake, sleeps, backoff_base=2.0)
    assert client.search(text="cat")["total"] == 5
    assert fake.calls["http_500"] == 3 and client.calls == 4
    # attempt a waits in [base*2^a/2, base*2^a]: 2 -> [1, 2], 4 -> [2, 4], 8 -> [4, 8]
    for a, s in enumerate(sleeps):
        assert 2.0 * 2**a / 2 <= s <= 2.0 * 2**a


def test_gives_up_after_max_retries(fake):
    fake.inject(http_500=100)
    client = client_for(fake, max_retries=2)
    with pytest.raises(FlickrUnavailableError, match="after 3 attempts.*HTTP 500"):
        client.search(text="cat")
    assert client.calls == 3


def test_timeouts_retried(fake):
    fake.inject(slow=1, slow_seconds=60.0)  # the server wakes early when the fake closes
    client = client_for(fake, timeout=1.0)
    assert client.search(text="cat")["total"] == 5
    assert client.calls == 2


def test_key_not_in_debug_logs_of_a_successful_call(fake, caplog):
    caplog.set_level("DEBUG")  # urllib3 logs each request line at DEBUG
    client_for(fake).search(text="cat")
    assert "/services/rest/" in caplog.text and KEY not in caplog.text


def test_key_never_in_errors_or_logs(caplog):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = FlickrClient(KEY, endpoint=f"http://127.0.0.1:{port}/services/rest/",
                          max_retries=1, sleep=lambda s: None)
    caplog.set_level("DEBUG")
    with pytest.raises(FlickrUnavailableError) as info:
        client.search(text="cat")
    text = "".join(traceback.format_exception(info.value))
    assert "ConnectionError" in text and "Connection refused" in text
    assert KEY not in text and KEY not in repr(client) and KEY not in caplog.text


def test_exception_text_with_the_key_is_redacted(caplog):
    class LeakySession:
        """A transport whose errors quote the key, as requests' do for GET URLs."""

        def post(self, url: str, data: dict, timeout: float, allow_redirects: bool) -> None:
            raise requests.ConnectionError(f"failed: {url}?api_key={data['api_key']}&x=1")

    client = FlickrClient(KEY, session=LeakySession(), max_retries=2, sleep=lambda s: None)
    caplog.set_level("DEBUG")
    with pytest.raises(FlickrUnavailableError) as info:
        client.check_key()
    text = "".join(traceback.format_exception(info.value))
    assert "api_key=***&x=1" in text and info.value.__cause__ is None
    assert KEY not in text and KEY not in caplog.text and "api_key=***" in caplog.text


def test_redact_masks_key_and_url_parameter():
    assert redact(f"GET /rest?api_key={KEY}&x=1 {KEY}", KEY) == "GET /rest?api_key=***&x=1 ***"
    assert redact("url?api_key=other&y=2", KEY) == "url?api_key=***&y=2"


class FakeClock:
    """Time that passes only when someone sleeps; thread-safe."""

    def __init__(self) -> None:
        self.t = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        with self.lock:
            return self.t

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.t += seconds
        time.sleep(0)  # let other threads run


def max_in_window_excess(grants: list[float], capacity: int, rate: float) -> float:
    """max over windows [t_i, t_j] of (grants inside) - (capacity + rate * width)."""
    t = np.sort(np.asarray(grants))
    i, j = np.triu_indices(len(t))
    return float(np.max((j - i + 1) - (capacity + rate * (t[j] - t[i]))))


def test_token_bucket_hand_computed_schedule():
    clock = FakeClock()
    bucket = TokenBucket(3600, capacity=3, clock=clock, sleep=clock.sleep)
    grants = [bucket.acquire() for _ in range(6)]
    assert grants == pytest.approx([0.0, 0.0, 0.0, 1.0, 2.0, 3.0])


def test_token_bucket_never_exceeds_rate_across_threads():
    clock = FakeClock()
    bucket = TokenBucket(3600, capacity=3, clock=clock, sleep=clock.sleep)
    grants: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(40):
            g = bucket.acquire()
            with lock:
                grants.append(g)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(grants) == 320
    assert max_in_window_excess(grants, 3, 1.0) <= 1e-9
    assert max(grants) >= 320 - 3 - 1e-9  # 3600/hour = 1/s: 317 s at least after the burst


def test_token_bucket_rejects_bad_settings():
    with pytest.raises(ValueError, match="calls_per_hour"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(10, capacity=0)


# ---- redirects: the key never follows one ------------------------------------------------------
@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_an_api_redirect_is_an_error_and_the_key_goes_nowhere(fake, status):
    # `fake` (another port) would answer fine: the client must not send it anything.
    where = (("Location", fake.endpoint),)
    with ScriptedServer({"/services/rest/": Reply(status, b"", where)}) as srv:
        client = FlickrClient(KEY, endpoint=srv.base + "/services/rest/", calls_per_hour=FAST,
                              sleep=lambda s: None)
        with pytest.raises(FlickrError, match=f"HTTP {status}.*not followed") as info:
            client.check_key()
    assert fake.calls["api"] == 0
    assert srv.hits["/services/rest/"] == 1  # an error at once, not retried
    assert KEY not in str(info.value) and info.value.code == status


# ---- malformed answers --------------------------------------------------------------------------
@pytest.mark.parametrize(("photos", "why"), [
    ({"total": "abc", "pages": 1, "photo": []}, "'total'"),
    ({"total": 1e300, "pages": 1, "photo": []}, "'total'"),
    ({"total": 5, "pages": "many", "photo": []}, "'pages'"),
    ({"total": 5, "pages": 1, "photo": {"id": "1"}}, "'photo'"),
    ({"total": 5, "pages": 1, "photo": ["1"]}, "'photo'"),
    ({"total": -1, "pages": 1, "photo": []}, "'total'"),
    ({"total": True, "pages": 1, "photo": []}, "'total'"),
    ("photos", "no 'photos'"),
])
def test_check_search_answer_names_what_is_wrong(photos, why):
    assert why in check_search_answer(photos)


def test_check_search_answer_reads_flickr_strings():
    checked = check_search_answer({"total": "4001", "pages": "17", "page": 2, "photo": []})
    assert (checked["total"], checked["pages"], checked["page"]) == (4001, 17, 2)


def test_a_malformed_answer_is_retried_a_bounded_number_of_times(fake, caplog):
    fake.tamper_search = lambda photos: {**photos, "total": "abc"}
    sleeps: list[float] = []
    client = client_for(fake, sleeps, bad_answer_retries=2)
    with pytest.raises(FlickrBadAnswer, match="bad_answer: 'total' is 'abc'"):
        client.search(text="cat", has_geo=1, min_upload_date=0)
    assert fake.calls["flickr.photos.search"] == 3 and len(sleeps) == 2
    assert sum("malformed answer" in m for m in caplog.messages) == 3


def test_a_malformed_answer_once_is_retried_and_used(fake):
    answers = iter([lambda p: {**p, "photo": {"id": "1"}}])
    fake.tamper_search = lambda photos: next(answers, lambda p: p)(photos)
    photos = client_for(fake).search(text="cat", has_geo=1, min_upload_date=0)
    assert photos["total"] == 5 and len(photos["photo"]) == 5
    assert fake.calls["flickr.photos.search"] == 2
