"""The fake Flickr server itself: what other tests rely on it to serve."""

from __future__ import annotations

import io
import time

import pytest
import requests
from PIL import Image

from flickr_mammal.search import EXTRAS
from tests.flickr_mammal.fakeflickr import FakeFlickr, bomb_png, generate_photos, synthetic_jpeg

FAULTS = ("empty", "truncated", "html", "bomb", "404", "500", "no_url", "bad_geo")


@pytest.fixture(scope="module")
def served():
    photos = generate_photos(["cat", "dog"], 10, seed=1, faults=FAULTS)
    photos["dog"][-1]["image"] = f"same_as:{photos['dog'][-2]['id']}"  # a duplicate image
    with FakeFlickr(photos) as fake:
        answer = requests.get(fake.endpoint, params={
            "method": "flickr.photos.search", "api_key": "testkey", "text": "cat",
            "has_geo": 1, "extras": EXTRAS, "format": "json", "nojsoncallback": 1,
        }).json()
        yield fake, photos, {p["id"]: p for p in answer["photos"]["photo"]}


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def test_search_answer_looks_like_flickr(served):
    fake, photos, by_id = served
    assert len(by_id) == 10
    good = by_id[photos["cat"][-1]["id"]]
    for key in ("id", "owner", "secret", "server", "farm", "title", "latitude", "longitude",
                "accuracy", "license", "ownername", "dateupload", "datetaken", "url_z",
                "width_z", "height_z"):
        assert key in good
    assert good["url_z"].startswith(fake.base_url + "/img/")
    assert "url_z" not in by_id[photos["cat"][6]["id"]]  # the "no_url" photo


def test_good_images_are_real_distinct_jpegs(served):
    fake, photos, by_id = served
    a, b = (get(by_id[p["id"]]["url_z"]) for p in photos["cat"][-2:])
    assert a.headers["Content-Type"] == "image/jpeg" and a.content != b.content
    img = Image.open(io.BytesIO(a.content))
    assert img.format == "JPEG" and img.size == (by_id[photos["cat"][-2]["id"]]["width_z"],
                                                 by_id[photos["cat"][-2]["id"]]["height_z"])
    dog = photos["dog"]
    assert get(fake.image_url(dog[-1]["id"])).content == get(fake.image_url(dog[-2]["id"])).content


def test_broken_images(served):
    fake, photos, _ = served
    cat = photos["cat"]
    resp = {f: get(fake.image_url(p["id"])) for f, p in zip(FAULTS[:6], cat, strict=False)}
    assert resp["empty"].status_code == 200 and resp["empty"].content == b""
    assert resp["html"].headers["Content-Type"] == "text/html"
    assert (resp["404"].status_code, resp["500"].status_code) == (404, 500)
    with pytest.raises(OSError):
        Image.open(io.BytesIO(resp["truncated"].content)).load()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(resp["bomb"].content))
    assert get(fake.image_url("999")).status_code == 404


def test_bomb_is_small_on_the_wire_and_huge_when_decoded():
    data = bomb_png()
    assert len(data) < 200_000
    Image.MAX_IMAGE_PIXELS, old = None, Image.MAX_IMAGE_PIXELS
    try:
        assert Image.open(io.BytesIO(data)).size == (30_000, 30_000)
    finally:
        Image.MAX_IMAGE_PIXELS = old


def test_synthetic_jpeg_is_deterministic():
    assert synthetic_jpeg("42", 64, 48) == synthetic_jpeg.__wrapped__("42", 64, 48)


def test_api_faults_and_methods():
    with FakeFlickr(generate_photos(["cat"], 3)) as fake:
        base = {"api_key": "testkey", "format": "json", "nojsoncallback": 1}
        fake.inject(http_429=1, retry_after="9", http_500=1)
        r429 = requests.get(fake.endpoint, params={**base, "method": "flickr.test.echo"})
        r500 = requests.get(fake.endpoint, params={**base, "method": "flickr.test.echo"})
        echo = requests.post(fake.endpoint, data={**base, "method": "flickr.test.echo", "a": "b"})
        bad = requests.get(fake.endpoint, params={**base, "method": "flickr.nope"}).json()
        jsonp = requests.get(fake.endpoint, params={"api_key": "x", "format": "json"}).text
    assert (r429.status_code, r429.headers["Retry-After"], r500.status_code) == (429, "9", 500)
    assert echo.json()["a"] == {"_content": "b"} and "api_key" not in echo.json()
    assert (bad["stat"], bad["code"]) == ("fail", 112)
    assert jsonp.startswith("jsonFlickrApi(") and '"code": 100' in jsonp


def test_geo_query_without_limiting_agent_sees_last_12_hours():
    now = time.time()
    photos = generate_photos(["cat"], 2)
    photos["cat"][0]["dateupload"] = str(int(now - 3600))
    photos["cat"][1]["dateupload"] = str(int(now - 13 * 3600))
    with FakeFlickr(photos, now=now) as fake:
        ans = requests.get(fake.endpoint, params={
            "method": "flickr.photos.search", "api_key": "testkey", "has_geo": 1,
            "format": "json", "nojsoncallback": 1}).json()
    assert [p["id"] for p in ans["photos"]["photo"]] == [photos["cat"][0]["id"]]


def test_unknown_image_spec_refused_up_front():
    with pytest.raises(ValueError, match="unknown image spec"):
        FakeFlickr({"cat": [{"id": "1", "image": "corrupt"}]})
