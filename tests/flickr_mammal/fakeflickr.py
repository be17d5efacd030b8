"""A local Flickr look-alike for tests: photos.search and an image server (docs/reference.md §2).

Usage::

    photos = generate_photos(["cat", "dog"], per_class=50, seed=0, faults=("truncated", "404"))
    with FakeFlickr(photos) as fake:
        client = FlickrClient("testkey", endpoint=fake.endpoint)
        ...
        fake.calls["flickr.photos.search"]   # counters; fake.search_log holds each call's params

Faithful where our client and search depend on it: fail answers are HTTP 200 with
``{"stat": "fail", "code": N}`` (100 = wrong key, 112 = unknown method), ``min_upload_date`` and
``max_upload_date`` are inclusive, geo queries give at most 250 a page, a geo query with no
limiting agent sees only the last 12 hours, and any query yields at most 4,000 distinct results:
later pages repeat earlier ones while ``total`` still tells the truth.

Photos are Flickr-style dicts (``id``, ``owner``, ``title``, ``tags``, ``latitude``, ...); each
photo listed under a class gets that class as a tag, and a photo listed under two classes is one
photo found by both searches. ``text`` matches a whole tag (spaces removed, as Flickr stores tags)
or a run of words in the title, so "lion" does not find a photo tagged "sea lion".
Extra keys steer the fake: ``image`` (``"ok"``, one of :data:`IMAGE_FAULTS`, ``"same_as:<id>"``,
or raw bytes), ``width``/``height`` of the served image, and ``sizes`` (which ``url_*`` exist).
``tamper_search`` (a function of the ``photos`` object, or None) rewrites every search answer,
to play a Flickr that answers junk (``total: "abc"``) or lies (``total: 10**9``).
"""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.flickr_mammal.fakeflickr_data import (
    CONTINENT_POINTS,
    IMAGE_FAULTS,
    RECORD_FAULTS,
    bomb_png,
    check_image_spec,
    generate_photos,
    image_answer,
    synthetic_jpeg,
)

__all__ = [
    "CONTINENT_POINTS", "FakeFlickr", "IMAGE_FAULTS", "RECORD_FAULTS", "RESULT_CAP",
    "bomb_png", "generate_photos", "synthetic_jpeg",
]

RESULT_CAP = 4000


def _tag(text: str) -> str:
    return "".join(text.lower().split())


@dataclass
class _Entry:
    """One indexed photo: the parsed fields search filters on, plus the caller's dict."""

    photo: dict[str, Any]
    upload: int
    license: int
    tags: frozenset[str]
    words: tuple[str, ...]
    geo: bool
    order: tuple[int, int, str]  # (upload date, numeric id, id): the date-posted order


@dataclass
class _Faults:
    """Faults still to inject, consumed one per API call (images: one per image request)."""

    slow: int = 0
    slow_seconds: float = 1.0
    http_429: int = 0
    retry_after: str | None = "1"
    http_500: int = 0
    stat_fail: list[tuple[int, str]] = field(default_factory=list)
    image_500: int = 0


class FakeFlickr:
    """The fake server; a context manager. ``endpoint`` is the REST URL to give FlickrClient."""

    def __init__(
        self,
        photos_by_class: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
        *,
        api_key: str = "testkey",
        api_delay: float = 0.0,
        image_delay: float = 0.0,
        now: float | None = None,
    ) -> None:
        self.api_key = api_key
        self.api_delay = api_delay
        self.image_delay = image_delay
        self.now = now
        self.calls: Counter[str] = Counter()
        self.search_log: list[dict[str, str]] = []
        self.tamper_search: Callable[[dict[str, Any]], Any] | None = None
        self._faults = _Faults()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._entries: list[_Entry] = []
        self._by_id: dict[str, _Entry] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        for name, photos in (photos_by_class or {}).items():
            self.add_photos(name, photos)

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> FakeFlickr:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(  # a short poll so close() returns at once
            target=server.serve_forever, args=(0.02,), name="fakeflickr", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()  # wakes handlers sleeping in an injected delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeFlickr:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeFlickr is not running: use it as a context manager or start()")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/services/rest/"

    def image_url(self, photo_id: str, size: str = "z") -> str:
        return f"{self.base_url}/img/{photo_id}_{size}.jpg"

    # ---- data and faults -------------------------------------------------------------------
    def add_photos(self, class_name: str, photos: Iterable[Mapping[str, Any]]) -> None:
        """Index ``photos`` under ``class_name`` (a photo already known gains the class's tag)."""
        with self._lock:
            for p in photos:
                pid = str(p["id"])
                check_image_spec(p.get("image", "ok"))
                old = self._by_id.get(pid)
                photo = dict(old.photo) if old else {**p, "id": pid}
                photo["tags"] = " ".join(
                    sorted(set(str(photo.get("tags", "")).split()) | {_tag(class_name)})
                )
                entry = _index(photo)
                if old:
                    self._entries.remove(old)
                self._by_id[pid] = entry
                bisect.insort(self._entries, entry, key=lambda e: e.order)

    def photo(self, photo_id: str) -> dict[str, Any]:
        return self._by_id[str(photo_id)].photo

    def inject(
        self,
        *,
        slow: int = 0,
        slow_seconds: float = 1.0,
        http_429: int = 0,
        retry_after: str | None = "1",
        http_500: int = 0,
        stat_fail: Sequence[tuple[int, str]] = (),
        image_500: int = 0,
    ) -> None:
        """Make the next API calls fail: first ``slow`` delayed, then ``http_429`` answered 429
        (with ``Retry-After: retry_after``), then ``http_500`` answered 500, then the
        ``stat_fail`` (code, message) answers in order; ``image_500`` image requests fail."""
        with self._lock:
            self._faults = _Faults(
                slow, slow_seconds, http_429, retry_after, http_500, list(stat_fail), image_500
            )

    # ---- request handling (called from server threads) --------------------------------------
    def _handle_api(self, params: dict[str, str]) -> tuple[int, bytes, str, dict[str, str]]:
        with self._lock:
            self.calls["api"] += 1
            f = self._faults
            slow, f.slow = f.slow > 0, max(0, f.slow - 1)
            delay = f.slow_seconds if slow else self.api_delay
        if delay:
            self._stop.wait(delay)
        with self._lock:
            if f.http_429 > 0:
                f.http_429 -= 1
                self.calls["http_429"] += 1
                headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
                return 429, b"Too Many Requests", "text/plain", headers
            if f.http_500 > 0:
                f.http_500 -= 1
                self.calls["http_500"] += 1
                return 500, b"<html>Internal Server Error</html>", "text/html", {}
            method = params.get("method", "")
            self.calls[method] += 1
            if params.get("api_key") != self.api_key:
                return _json(params, _fail(100, "Invalid API Key (Key has invalid format)"))
            if f.stat_fail:
                return _json(params, _fail(*f.stat_fail.pop(0)))
            if method == "flickr.photos.search":
                self.search_log.append({k: v for k, v in params.items() if k != "api_key"})
        if method == "flickr.test.echo":
            echo = {k: {"_content": v} for k, v in params.items() if k != "api_key"}
            return _json(params, {**echo, "stat": "ok"})
        if method == "flickr.photos.search":
            answer = self._search(params)
            if self.tamper_search is not None and answer.get("stat") == "ok":
                answer = {**answer, "photos": self.tamper_search(answer["photos"])}
            return _json(params, answer)
        return _json(params, _fail(112, f'Method "{method}" not found'))

    def _search(self, p: Mapping[str, str]) -> dict[str, Any]:
        text, tags = _tag(p.get("text", "")), [_tag(t) for t in p.get("tags", "").split(",")]
        tags = [t for t in tags if t]
        words = tuple(p.get("text", "").lower().split())
        has_geo = p.get("has_geo") == "1"
        lo, hi = _num(p.get("min_upload_date")), _num(p.get("max_upload_date"))
        if not (text or tags or lo is not None or hi is not None):
            if not has_geo:
                return _fail(3, "Parameterless searches have been disabled.")
            lo = int((self.now or time.time()) - 12 * 3600)  # geo without a limiting agent
        licenses = {int(x) for x in p.get("license", "").split(",") if x.strip()}
        with self._lock:
            entries = list(self._entries)
        keys = [e.upload for e in entries]
        start = bisect.bisect_left(keys, lo) if lo is not None else 0
        stop = bisect.bisect_right(keys, hi) if hi is not None else len(keys)
        hits = [
            e for e in entries[start:stop]
            if (not has_geo or e.geo)
            and (not licenses or e.license in licenses)
            and (not text or text in e.tags or _contains(e.words, words))
            and (not tags or _tags_match(e.tags, tags, p.get("tag_mode", "any")))
        ]
        _sort(hits, p.get("sort", "date-posted-desc"))
        cap_pp = 250 if has_geo else 500
        per_page = min(max(int(_num(p.get("per_page")) or 100), 1), cap_pp)
        page = max(int(_num(p.get("page")) or 1), 1)
        total = len(hits)
        # Past the cap, Flickr repeats earlier results: position i shows result i % 4000.
        idx = [i if total <= RESULT_CAP else i % RESULT_CAP
               for i in range((page - 1) * per_page, min(page * per_page, total))]
        extras = {x.strip() for x in p.get("extras", "").split(",")}
        return {
            "photos": {
                "page": page, "pages": math.ceil(total / per_page), "perpage": per_page,
                "total": total,
                "photo": [self._photo_json(hits[i].photo, extras) for i in idx],
            },
            "stat": "ok",
        }

    def _photo_json(self, photo: Mapping[str, Any], extras: set[str]) -> dict[str, Any]:
        out = {k: v for k, v in photo.items() if k in _BASE_KEYS}
        out.update(secret="0f1e2d3c", server="65535", farm=66, ispublic=1, isfriend=0, isfamily=0)
        out.setdefault("owner", "00000000@N00")
        out.setdefault("title", "")
        for extra, keys in _EXTRA_FIELDS.items():
            if extra in extras:
                out.update({k: photo[k] for k in keys if k in photo})
        if "geo" in extras and "latitude" in photo:
            out.update(context=0, place_id="", woeid="")
        for size in photo.get("sizes", ("z", "c", "m")):
            if f"url_{size}" in extras:
                out[f"url_{size}"] = self.image_url(str(photo["id"]), size)
                out[f"width_{size}"] = photo.get("width", 320)
                out[f"height_{size}"] = photo.get("height", 240)
        return out

    def _handle_image(self, name: str) -> tuple[int, bytes, str, dict[str, str]]:
        pid = name.rsplit(".", 1)[0].rsplit("_", 1)[0]
        with self._lock:
            self.calls["image"] += 1
            entry = self._by_id.get(pid)
            fail = self._faults.image_500 > 0
            self._faults.image_500 = max(0, self._faults.image_500 - 1)
        if self.image_delay:
            self._stop.wait(self.image_delay)
        if fail:
            return 500, b"<html>Internal Server Error</html>", "text/html", {}
        spec = entry.photo.get("image", "ok") if entry else None
        if isinstance(spec, str) and spec.startswith("same_as:"):  # serve the other's bytes
            entry = self._by_id.get(spec.split(":", 1)[1])
        if entry is None:
            return 404, b"<html>Not Found</html>", "text/html", {}
        return image_answer(entry.photo)


_BASE_KEYS = frozenset({"id", "owner", "title"})
_EXTRA_FIELDS: dict[str, tuple[str, ...]] = {
    "geo": ("latitude", "longitude", "accuracy"),
    "license": ("license",),
    "owner_name": ("ownername",),
    "date_upload": ("dateupload",),
    "date_taken": ("datetaken",),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients' connection pools expect
    disable_nagle_algorithm = True  # headers and body go out as two writes: no 40 ms stall

    def do_GET(self) -> None:
        self._route(parse_qs(urlsplit(self.path).query))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        self._route({**parse_qs(urlsplit(self.path).query), **parse_qs(body)})

    def _route(self, query: dict[str, list[str]]) -> None:
        fake: FakeFlickr = self.server.fake  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        params = {k: v[-1] for k, v in query.items()}
        if path.rstrip("/").endswith("/services/rest"):
            answer = fake._handle_api(params)
        elif path.startswith("/img/"):
            answer = fake._handle_image(path[len("/img/"):])
        else:
            answer = (404, b"<html>Not Found</html>", "text/html", {})
        status, body, ctype, headers = answer
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to do

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output quiet


def _index(photo: dict[str, Any]) -> _Entry:
    geo = photo.get("latitude") is not None and photo.get("longitude") is not None
    pid = str(photo["id"])
    upload = int(_num(photo.get("dateupload")) or 0)
    return _Entry(
        photo=photo,
        upload=upload,
        license=int(_num(photo.get("license")) or 0),
        tags=frozenset(str(photo.get("tags", "")).split()),
        words=tuple(str(photo.get("title", "")).lower().split()),
        geo=geo,
        order=(upload, int(pid) if pid.isdigit() else 0, pid),
    )


def _num(value: str | int | float | None) -> int | None:
    if value is None or value == "":
        return None
    return int(float(value))


def _contains(words: tuple[str, ...], phrase: tuple[str, ...]) -> bool:
    n = len(phrase)
    return n > 0 and any(words[i:i + n] == phrase for i in range(len(words) - n + 1))


def _tags_match(have: frozenset[str], want: list[str], mode: str) -> bool:
    return all(t in have for t in want) if mode == "all" else any(t in have for t in want)


def _sort(hits: list[_Entry], sort: str) -> None:
    """Sort in place; ``hits`` arrive in date-posted-asc order (the index's order)."""
    if sort.startswith("date-taken"):
        hits.sort(key=lambda e: (str(e.photo.get("datetaken", "")), e.order[1:]))
    # Flickr's other sorts (relevance, interestingness) are approximated by date-posted-desc
    if sort.endswith("-desc") or sort not in ("date-posted-asc", "date-taken-asc"):
        hits.reverse()


def _fail(code: int, message: str) -> dict[str, Any]:
    return {"stat": "fail", "code": code, "message": message}


def _json(params: Mapping[str, str], obj: Mapping[str, Any]) -> tuple[int, bytes, str, dict]:
    text = json.dumps(obj)
    if params.get("nojsoncallback") != "1":
        text = f"jsonFlickrApi({text})"
    return 200, text.encode(), "application/json", {}
