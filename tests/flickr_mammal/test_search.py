"""search_class: record conversion, paging, the 4,000 cap and date slicing, resume, early stop."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pytest

from flickr_mammal.classes import get_class
from flickr_mammal.flickr_api import FlickrAuthError, FlickrClient
from flickr_mammal.records import Status
from flickr_mammal.search import (
    EXTRAS,
    SearchConfig,
    SliceResult,
    best_url,
    photo_to_record,
    search_class,
)
from tests.flickr_mammal.fakeflickr import CONTINENT_POINTS, FakeFlickr, generate_photos

LO, HI = 1_400_000_000, 1_500_000_000
CAT = get_class("cat")
ALL_LICENSES = range(11)


def run(client: FlickrClient, cls=CAT, **kw: Any) -> list[SliceResult]:
    kw = {"licenses": ALL_LICENSES, "min_upload_date": LO, "max_upload_date": HI,
          "per_class": 100_000, **kw}
    return list(search_class(client, cls, **kw))


def client(fake: FakeFlickr, key: str = "testkey") -> FlickrClient:
    return FlickrClient(key, endpoint=fake.endpoint, calls_per_hour=3_600_000,
                        sleep=lambda s: None)


def ids(slices: list[SliceResult]) -> list[str]:
    return [r.photo_id for s in slices for r in s.records]


def one_class(n: int, **kw: Any) -> dict[str, list[dict[str, Any]]]:
    return generate_photos(["cat"], n, min_upload_date=LO, max_upload_date=HI, **kw)


@pytest.fixture(scope="module")
def big():
    """9,000 photos of one class in the window: more than twice the 4,000 cap."""
    photos = one_class(9000)
    with FakeFlickr(photos) as fake:
        yield fake, photos


@pytest.fixture
def big_fake(big):
    fake, _ = big
    fake.calls.clear()
    return fake


# ---- record conversion ----------------------------------------------------------------------
def test_photo_to_record_converts_flickr_strings():
    photo = {
        "id": "123", "owner": "9@N01", "ownername": "ann", "title": "Tom", "latitude": "48.85",
        "longitude": "2.35", "accuracy": "16", "license": "4", "dateupload": "1500000000",
        "datetaken": "2017-07-14 10:00:00", "url_m": "http://127.0.0.1/m.jpg", "width_m": "240",
        "url_z": "http://127.0.0.1/z.jpg", "width_z": "640", "height_z": "480",
    }
    r = photo_to_record(photo, CAT)
    assert (r.photo_id, r.owner, r.title) == ("123", "9@N01", "Tom")
    assert (r.class_name, r.label) == ("cat", 6)
    assert (r.latitude, r.longitude, r.accuracy, r.license) == (48.85, 2.35, 16, 4)
    assert (r.date_upload, r.date_taken) == (1_500_000_000, "2017-07-14 10:00:00")
    assert (r.url, r.width, r.height) == ("http://127.0.0.1/z.jpg", 640, 480)
    assert r.status == Status.SEARCHED and r.error == ""
    assert r.extra == {"ownername": "ann"}


def test_best_url_prefers_z_then_c_then_m():
    photo = {"url_m": "http://127.0.0.1/m", "url_c": "http://127.0.0.1/c", "width_c": 800}
    assert best_url(photo) == ("http://127.0.0.1/c", 800, 0)
    assert best_url({"url_m": "http://127.0.0.1/m"}) == ("http://127.0.0.1/m", 0, 0)
    assert best_url({"url_z": "", "url_c": None}) == ("", 0, 0)


@pytest.mark.parametrize(
    ("changes", "error"),
    [({"url_z": None}, "no_url"), ({"latitude": "abc"}, "bad_geo"),
     ({"longitude": "200"}, "bad_geo"), ({"latitude": None}, "bad_geo"),
     ({"id": "/tmp/x"}, "bad_id"), ({"id": "../../evil"}, "bad_id"),
     ({"id": "1/../../x"}, "bad_id"), ({"id": "12\x0034"}, "bad_id"), ({"id": "7" * 300}, "bad_id"),
     ({"id": "\u0661\u0662"}, "bad_id"), ({"id": "1.5"}, "bad_id"),
     ({"id": "/x", "url_z": None}, "bad_id")],  # the id is checked first
)
def test_unusable_photos_become_failed_records(changes, error):
    photo = {"id": "1", "latitude": "1.5", "longitude": "2.5", "url_z": "http://127.0.0.1/z",
             **changes}
    r = photo_to_record(photo, CAT)
    assert (r.status, r.error) == (Status.DOWNLOAD_FAILED, error)


# ---- searching ---------------------------------------------------------------------------------
def test_search_params_and_paging():
    with FakeFlickr(one_class(600, licenses=(1, 4, 9))) as fake:
        slices = run(client(fake), licenses=[9, 1, 4, 1])
        sent = fake.search_log
    assert len(slices) == 1 and slices[0].total == 600 and slices[0].complete
    assert (slices[0].min_date, slices[0].max_date) == (LO, HI)
    got = ids(slices)
    assert len(got) == len(set(got)) == 600
    assert [p["page"] for p in sent] == ["1", "2", "3"]
    first = sent[0]
    assert (first["text"], first["has_geo"], first["license"], first["media"]) == (
        "cat", "1", "1,4,9", "photos")
    assert (first["content_type"], first["per_page"], first["extras"]) == ("1", "250", EXTRAS)
    assert (first["min_upload_date"], first["max_upload_date"]) == (str(LO), str(HI))


def test_reaching_per_class_on_the_last_page_still_completes_the_slice():
    with FakeFlickr(one_class(300)) as fake:
        (exact,) = run(client(fake), per_class=300)
        (cut,) = run(client(fake), per_class=260)
    assert (len(exact.records), exact.complete) == (300, True)
    assert (len(cut.records), cut.complete) == (260, False)


def test_fake_repeats_results_past_the_cap(big_fake):
    """The fake is faithful to the problem slicing solves: 36 pages give only 4,000 photos."""
    c = client(big_fake)
    seen: list[str] = []
    for page in range(1, 37):
        ans = c.search(text="cat", has_geo=1, min_upload_date=LO, max_upload_date=HI,
                       per_page=250, page=page)
        seen += [p["id"] for p in ans["photo"]]
    assert ans["total"] == 9000 and len(seen) == 9000 and len(set(seen)) == 4000


def test_slicing_finds_every_photo_past_the_cap_exactly_once(big):
    fake, photos = big
    slices = run(client(fake))
    got = ids(slices)
    assert len(got) == len(set(got)) == 9000
    assert set(got) == {p["id"] for p in photos["cat"]}
    assert all(s.total <= 4000 for s in slices)
    spans = sorted((s.min_date, s.max_date) for s in slices)  # a partition of [LO, HI]
    assert spans[0][0] == LO and spans[-1][1] == HI
    assert all(b + 1 == c for (_, b), (c, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize("min_slice", [1, 3600])
def test_a_narrowest_slice_over_the_cap_takes_4000_and_warns(caplog, min_slice):
    photos = one_class(4100)
    for p in photos["cat"]:
        p["dateupload"] = str(LO + 5)
    with FakeFlickr(photos) as fake:
        slices = run(client(fake), config=SearchConfig(min_slice_seconds=min_slice))
    full = [s for s in slices if s.total]
    assert len(full) == 1 and full[0].total == 4100 and len(full[0].records) == 4000
    assert full[0].min_date <= LO + 5 <= full[0].max_date
    assert min_slice <= full[0].max_date - full[0].min_date + 1 < 2 * min_slice
    assert (full[0].complete, full[0].error) == (True, "over_cap")
    assert "only the first 4000 can be fetched" in caplog.text


def test_upload_dates_are_inclusive_and_filter():
    photos = one_class(4)
    for p, t in zip(photos["cat"], [LO - 1, LO, HI, HI + 1], strict=True):
        p["dateupload"] = str(t)
    with FakeFlickr(photos) as fake:
        got = ids(run(client(fake)))
    assert sorted(got) == sorted(p["id"] for p in photos["cat"][1:3])


def test_text_license_and_geo_filters():
    photos = generate_photos(["lion", "sea lion"], 20, min_upload_date=LO, max_upload_date=HI,
                             licenses=[0, 4])
    photos["lion"][0].pop("latitude")  # not geotagged: has_geo=1 leaves it out
    with FakeFlickr(photos) as fake:
        got = run(client(fake), cls=get_class("lion"), licenses=[4])
    want = {p["id"] for p in photos["lion"][1:] if p["license"] == "4"}
    assert set(ids(got)) == want and 0 < len(want) < 19


def test_rejected_key_stops_before_any_record():
    with FakeFlickr(one_class(10)) as fake:
        with pytest.raises(FlickrAuthError):
            run(client(fake, key="nope"))
        assert fake.calls["flickr.photos.search"] == 1


def test_resume_skips_done_slices_without_calls(big_fake):
    fake = big_fake
    first = run(client(fake))
    done = {s.key for s in first}
    fake.calls.clear()
    assert run(client(fake), done_slices=done) == []
    assert fake.calls["flickr.photos.search"] == 0
    last = first[-1]
    again = run(client(fake), done_slices=done - {last.key})
    # only the missing slice is fetched: its pages, no probes of the parents split before
    assert [s.key for s in again] == [last.key] and ids(again) == ids([last])
    assert fake.calls["flickr.photos.search"] == math.ceil(last.total / 250)


def test_stops_at_per_class(big_fake):
    slices = run(client(big_fake), per_class=300)
    calls = big_fake.calls["flickr.photos.search"]
    assert len(ids(slices)) == 300 and not slices[-1].complete
    assert calls <= 10  # a few probes while splitting, then 2 pages
    assert len(ids(run(client(big_fake), per_class=300, found_before=200))) == 100


def test_duplicate_ids_within_a_class_kept_once():
    class Repeating:
        """Two pages that share a photo, as when results shift while paging."""

        def search(self, **params: Any) -> dict[str, Any]:
            page = int(params["page"])
            pid = {1: ["1", "2"], 2: ["2", "3"]}[page]
            photos = [{"id": i, "latitude": 1, "longitude": 1, "url_z": "http://127.0.0.1/z"}
                      for i in pid]
            return {"total": 4, "pages": 2, "photo": photos}

    (s,) = run(Repeating())  # type: ignore[arg-type]
    assert [r.photo_id for r in s.records] == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"per_class": 0}, "per_class"), ({"min_upload_date": HI + 1}, "after"),
     ({"licenses": []}, "licenses")],
)
def test_bad_arguments_say_what_to_fix(kw, match):
    with pytest.raises(ValueError, match=match):
        run(None, **kw)  # type: ignore[arg-type]


def test_generated_photos_lean_to_one_continent():
    photos = generate_photos(["alpaca", "antelope"], 200, seed=3)
    names = [c for c, pts in CONTINENT_POINTS.items() for _ in pts]
    cities = np.array([pt for pts in CONTINENT_POINTS.values() for pt in pts])

    def continents(cls: str) -> Counter:
        pts = np.array([(p["latitude"], p["longitude"]) for p in photos[cls]])
        nearest = np.argmin(((pts[:, None, :] - cities[None]) ** 2).sum(-1), axis=1)
        return Counter(names[i] for i in nearest)

    # class i puts 60% (+ its share of the even 40%: 68% expected) on continent i % 5
    assert continents("alpaca").most_common(1)[0][0] == "Africa"
    assert continents("alpaca")["Africa"] > 0.5 * 200
    assert continents("antelope")["Americas"] > 0.5 * 200
    assert Counter(p["id"] for ps in photos.values() for p in ps).most_common(1)[0][1] == 1


# ---- malformed and lying answers ---------------------------------------------------------------
def client_retrying(fake: FakeFlickr) -> FlickrClient:
    return FlickrClient("testkey", endpoint=fake.endpoint, calls_per_hour=3_600_000,
                        sleep=lambda s: None, bad_answer_retries=1)


@pytest.mark.parametrize("junk", [{"total": "abc"}, {"pages": "many"}, {"photo": {"id": "1"}},
                                  {"total": 1e300}, {"photo": ["1", "2"]}])
def test_a_malformed_answer_becomes_a_failed_slice_not_a_traceback(caplog, junk):
    with FakeFlickr(one_class(30)) as fake:
        fake.tamper_search = lambda photos: {**photos, **junk}
        slices = run(client_retrying(fake))
        assert fake.calls["flickr.photos.search"] == 2  # asked once more, then given up
    assert [(s.min_date, s.max_date, s.records, s.complete, s.error) for s in slices] == [
        (LO, HI, (), False, "bad_answer")]
    assert "not fully enumerated" in caplog.text


def test_a_malformed_later_page_keeps_the_pages_before_it():
    with FakeFlickr(one_class(600)) as fake:
        fake.tamper_search = lambda p: {**p, "total": "abc"} if p["page"] == 2 else p
        (s,) = run(client_retrying(fake))
    assert (len(s.records), s.complete, s.error) == (250, False, "bad_answer")


@pytest.mark.timeout(60)  # before slicing was bounded this split down to 1-second slices
def test_a_lying_total_stops_at_the_minimum_slice_width():
    photos = one_class(1)
    day_lo, day_hi = LO, LO + 86_399
    photos["cat"][0]["dateupload"] = str(LO + 50_000)
    with FakeFlickr(photos) as fake:
        fake.tamper_search = lambda p: {**p, "total": 10**9}
        slices = run(client(fake), min_upload_date=day_lo, max_upload_date=day_hi)
        calls = fake.calls["flickr.photos.search"]
    assert ids(slices) == [photos["cat"][0]["id"]]
    assert all(s.max_date - s.min_date + 1 >= 3600 for s in slices)
    assert {s.error for s in slices} == {"over_cap"} and len(slices) == 16  # 86,400 s / 2**4
    assert calls == 15 + 16  # page 1 of the 15 slices split and of the 16 leaves


def test_a_class_stops_at_max_calls_and_says_so(caplog):
    with FakeFlickr(one_class(5)) as fake:
        fake.tamper_search = lambda p: {**p, "total": 10**9}
        slices = run(client(fake), config=SearchConfig(max_calls_per_class=40))
        assert fake.calls["flickr.photos.search"] == 40
    failed = [s for s in slices if s.error == "call_budget"]
    assert failed and all(not s.complete and not s.records for s in failed)
    spans = sorted((s.min_date, s.max_date) for s in slices)  # still a partition of [LO, HI]
    assert spans[0][0] == LO and spans[-1][1] == HI
    assert all(b + 1 == c for (_, b), (c, _) in zip(spans, spans[1:], strict=False))
    assert "stopped after 40 searches" in caplog.text and "not fully enumerated" in caplog.text


@pytest.mark.parametrize(("kw", "match"), [({"min_slice_seconds": 0}, "min_slice_seconds"),
                                           ({"max_calls_per_class": 0}, "max_calls_per_class")])
def test_search_config_says_what_to_fix(kw, match):
    with pytest.raises(ValueError, match=match):
        SearchConfig(**kw)
