"""flickr_mammal.download against a scripted HTTP server on 127.0.0.1 (no other network)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from flickr_mammal import download
from flickr_mammal.download import DownloadConfig, DownloadWorkerLost, download_records, photo
from flickr_mammal.download import procs as download_procs
from flickr_mammal.fetch import Fetcher
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord, Status
from skewtools.io import atomic_write_bytes, temp_path
from tests.flickr_mammal import sample_images as s
from tests.flickr_mammal.scripted_server import FakeSleep, Reply, ScriptedServer

ROOT = Path(__file__).resolve().parents[2]


def _record(photo_id: str, url: str) -> PhotoRecord:
    return PhotoRecord(photo_id=photo_id, owner="o", class_name="cat", label=7,
                       latitude=1.0, longitude=2.0, url=url)


BIG = b"\xff\xd8" + bytes(1_500_000)  # over the tests' 1 MB cap

ROUTES: dict[str, Reply | list[Reply]] = {
    "/ok.jpg": Reply(body=s.jpeg_ok()),
    "/alpha.png": Reply(body=s.png_alpha()),
    "/anim.gif": Reply(body=s.gif()),
    "/cmyk.jpg": Reply(body=s.cmyk_jpeg()),
    "/grey.jpg": Reply(body=s.grey_jpeg()),
    "/rotated.jpg": Reply(body=s.rotated_jpeg(6)),
    "/gps.jpg": Reply(body=s.gps_jpeg()),
    "/empty.jpg": Reply(body=b""),
    "/html.jpg": Reply(body=s.HTML, headers=(("Content-Type", "text/html"),)),
    "/truncated.jpg": Reply(body=s.china_jpeg()[:20_000]),
    "/bomb.png": Reply(body=s.png_bomb()),
    "/big-declared.jpg": Reply(body=BIG),
    "/big-streamed.jpg": Reply(body=BIG, content_length=False),
    "/gone.jpg": Reply(404, b"gone"),
    "/deleted.jpg": Reply(302, b"", (("Location", "/images/photo_unavailable.png"),)),
    "/images/photo_unavailable.png": Reply(body=s.small_png()),
    "/moved.jpg": Reply(301, b"", (("Location", "/ok.jpg"),)),
    "/private.jpg": Reply(403, b"no"),
    "/flaky.jpg": [Reply(500, b"oops"), Reply(body=s.china_jpeg())],
    "/busy.jpg": [Reply(429, b"", (("Retry-After", "1"),)), Reply(body=s.jpeg_ok())],
    "/down.jpg": Reply(503, b"down"),
    "/slow.jpg": Reply(body=s.jpeg_ok(), delay=2.0),
}

EXPECTED: dict[str, tuple[Status, str, tuple[int, int] | None]] = {
    "ok": (Status.DOWNLOADED, "", (300, 200)),
    "alpha": (Status.DOWNLOADED, "", (300, 300)),
    "anim": (Status.DOWNLOADED, "", (300, 200)),
    "cmyk": (Status.DOWNLOADED, "", (300, 200)),
    "grey": (Status.DOWNLOADED, "", (300, 300)),
    "rotated": (Status.DOWNLOADED, "", (200, 300)),
    "gps": (Status.DOWNLOADED, "", (300, 200)),
    "flaky": (Status.DOWNLOADED, "", (300, 200)),
    "busy": (Status.DOWNLOADED, "", (300, 200)),
    "empty": (Status.DOWNLOAD_FAILED, "empty", None),
    "html": (Status.DOWNLOAD_FAILED, "not_an_image", None),
    "truncated": (Status.DOWNLOAD_FAILED, "truncated", None),
    "bomb": (Status.DOWNLOAD_FAILED, "too_many_pixels", None),
    "big-declared": (Status.DOWNLOAD_FAILED, "too_large", None),
    "big-streamed": (Status.DOWNLOAD_FAILED, "too_large", None),
    "gone": (Status.DOWNLOAD_FAILED, "http_404", None),
    "deleted": (Status.DOWNLOAD_FAILED, "unavailable", None),
    "moved": (Status.DOWNLOADED, "", (300, 200)),
    "private": (Status.DOWNLOAD_FAILED, "http_403", None),
    "down": (Status.DOWNLOAD_FAILED, "http_503", None),
    "slow": (Status.DOWNLOAD_FAILED, "timeout", None),
    "nourl": (Status.DOWNLOAD_FAILED, "no_url", None),
}

# Photo ids are digits (anything else is refused as bad_id): the cases get ids by name.
ID = {name: str(1000 + i) for i, name in enumerate(EXPECTED)}
NAME = {i: name for name, i in ID.items()}

CONFIG = DownloadConfig(any_image_host=True,
                        workers=6, per_host=4, timeout=0.4, max_retries=2, max_bytes=1_000_000)


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(ROUTES) as srv:
        yield srv


@pytest.fixture(scope="module")
def outcome(server, tmp_path_factory):
    """One run over every case; the tests below check different sides of it."""
    layout = Layout.at(tmp_path_factory.mktemp("build"))
    stale = layout.image_path(ID["gone"])  # left by an interrupted earlier run
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"old")
    records = [_record(ID[name], f"{server.base}/{name}.{ext}") for name, ext in (
        (p.strip("/").rsplit(".", 1)) for p in ROUTES if p.count("/") == 1)]
    records.append(_record(ID["nourl"], ""))
    sleep = FakeSleep()
    out = list(download_records(iter(records), layout, CONFIG, fetcher=Fetcher(CONFIG, sleep)))
    return layout, {NAME[r.photo_id]: r for r in out}, sleep


def test_every_record_comes_back_once(outcome):
    _, by_id, _ = outcome
    assert sorted(by_id) == sorted(EXPECTED)


@pytest.mark.parametrize("photo_id", sorted(EXPECTED))
def test_status_error_and_size(outcome, photo_id):
    layout, by_id, _ = outcome
    status, error, size = EXPECTED[photo_id]
    rec = by_id[photo_id]
    assert (rec.status, rec.error) == (status, error)
    path = layout.image_path(ID[photo_id])
    if size is None:
        assert (rec.sha256, rec.width, rec.height) == ("", 0, 0)
        assert not path.exists()
    else:
        data = path.read_bytes()
        assert rec.sha256 == hashlib.sha256(data).hexdigest()
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size == (rec.width, rec.height) == size
            assert not im.getexif()


def test_files_exist_exactly_for_successes(outcome):
    layout, by_id, _ = outcome
    on_disk = {p for p in layout.images.rglob("*") if p.is_file()}
    ok = {layout.image_path(ID[i]) for i, r in by_id.items() if r.status is Status.DOWNLOADED}
    assert on_disk == ok  # and no temp files are left behind


def test_retries_only_what_is_worth_retrying(outcome, server):
    assert server.hits["/flaky.jpg"] == 2      # 500, then 200
    assert server.hits["/busy.jpg"] == 2       # 429, then 200
    assert server.hits["/down.jpg"] == 3       # 1 + max_retries, then give up
    assert server.hits["/slow.jpg"] == 3
    assert server.hits["/gone.jpg"] == 1       # 404 / 403: never retried
    assert server.hits["/private.jpg"] == 1


def test_retry_after_is_honoured(outcome):
    _, _, sleep = outcome
    assert 1.0 in sleep.calls                  # the 429's Retry-After: 1
    backoffs = [c for c in sleep.calls if c != 1.0]
    # 503 x2 + timeout x2 + 500 x1: full-jitter waits within base * 2**attempt
    assert len(backoffs) == 5 and all(0 <= c <= 1.0 for c in backoffs)


def test_connection_refused_is_a_failure_not_a_crash(tmp_path):
    with ScriptedServer({}) as srv:
        dead = srv.base + "/x.jpg"
    config = DownloadConfig(any_image_host=True, max_retries=1, timeout=1.0)
    out = list(download_records([_record("1", dead), _record("2", "ftp://x/y")],
                                Layout.at(tmp_path), config, fetcher=Fetcher(config, FakeSleep())))
    assert sorted((r.photo_id, r.error) for r in out) == [
        ("1", "connection_error"), ("2", "url_refused")]  # not http(s): never requested


def test_input_is_streamed_with_bounded_in_flight(server, tmp_path):
    pulled = 0

    def endless() -> Iterator[PhotoRecord]:
        nonlocal pulled
        while True:
            pulled += 1
            if pulled > 100:
                raise AssertionError("download_records read ahead: the input is not streamed")
            yield _record(str(pulled), server.base + "/gone.jpg")

    config = DownloadConfig(any_image_host=True, workers=2, max_in_flight=3, max_retries=0)
    results = download_records(endless(), Layout.at(tmp_path), config)
    first = [next(results) for _ in range(5)]
    results.close()  # the consumer may stop early: the workers stop and are joined
    assert all(r.error == "http_404" for r in first)
    assert pulled <= 3 + 5
    assert not [t for t in threading.enumerate() if t.name.startswith("download-")]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("workers", 0, "workers"), ("per_host", 0, "per_host"), ("timeout", 0, "timeout"),
     ("max_retries", -1, "max_retries"), ("quality", 101, "quality"), ("user_agent", " ", "agent")],
)
def test_config_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        DownloadConfig(**{field: value})


def test_an_unexpected_exception_is_recorded_not_raised(tmp_path, monkeypatch):
    def broken(self, url):
        raise KeyError("a bug deep in the HTTP stack")

    monkeypatch.setattr(Fetcher, "fetch", broken)
    out = list(download_records([_record("1", "http://127.0.0.1:9/x.jpg")], Layout.at(tmp_path)))
    assert [(r.status, r.error) for r in out] == [(Status.DOWNLOAD_FAILED, "unexpected_KeyError")]


def test_a_disk_failure_is_not_a_photo_failure(server, tmp_path):
    layout = Layout.at(tmp_path)
    layout.images.parent.mkdir(parents=True, exist_ok=True)
    layout.images.write_bytes(b"a file where the images folder should be")
    with pytest.raises(OSError):
        list(download_records([_record("1", server.base + "/ok.jpg")], layout, CONFIG))


# max_in_flight 3: one record per message to and from a worker; 20: batches of 5 (_ipc_batch),
# with 27 records, so the last batch each way is a partial one.
@pytest.mark.parametrize(("max_in_flight", "copies"), [(3, 4), (20, 5)])
def test_worker_processes_give_the_same_outcomes(server, tmp_path, caplog, max_in_flight,
                                                 copies):
    layout = Layout.at(tmp_path)
    names = ["ok", "rotated", "gone", "truncated", "html", "moved"]
    records = [_record(f"{i}{ID[name]}", f"{server.base}/{name}.jpg")
               for i in range(copies) for name in names][:27]
    config = DownloadConfig(any_image_host=True,
                            workers=2, processes=2, max_in_flight=max_in_flight,
                            max_retries=0)
    assert download_procs._ipc_batch(config) == max(1, max_in_flight // 4)
    with caplog.at_level(logging.INFO, logger="flickr_mammal.download"):
        out = {r.photo_id: r for r in download_records(iter(records), layout, config)}
    # The parent's one-line summary counts what the child processes did.
    reasons = dict(sorted(Counter(r.error for r in out.values() if r.error).items()))
    summary = f"download: {len(records) - sum(reasons.values())} ok, failures {reasons}"
    assert summary in caplog.messages
    assert sorted(out) == sorted(r.photo_id for r in records)
    for photo_id, rec in out.items():
        status, error, size = EXPECTED[NAME[photo_id[1:]]]
        assert (rec.status, rec.error) == (status, error)
        assert layout.image_path(photo_id).exists() == (size is not None)
    with pytest.raises(ValueError, match="fetcher"):
        list(download_records(records, layout, config, fetcher=Fetcher(config)))


_RUN_TWO_WORKERS = """
import sys
from flickr_mammal.download import DownloadConfig, download_records
from flickr_mammal.layout import Layout
from flickr_mammal.records import PhotoRecord
records = [PhotoRecord(photo_id=str(i), owner="o", class_name="cat", label=7, latitude=1.0,
                       longitude=2.0, url=sys.argv[1]) for i in range(1, 9)]
config = DownloadConfig(any_image_host=True, workers=2, processes=2, max_retries=0)
print(sorted(r.status.value for r in download_records(records, Layout.at(sys.argv[2]), config)))
import threading
print(sorted(t.name for t in threading.enumerate()))
"""


def test_worker_processes_exit_cleanly_after_their_last_result(server, tmp_path):
    # Workers skip the interpreter's teardown (os._exit) once their results are sent: nothing
    # of theirs may be left for the parent's resource tracker to clean up (tqdm's lock was).
    proc = subprocess.run([sys.executable, "-c", _RUN_TWO_WORKERS, server.base + "/ok.jpg",
                           str(tmp_path)], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert proc.returncode == 0, proc.stderr
    statuses, threads = proc.stdout.strip().splitlines()
    assert statuses == str(["downloaded"] * 8)
    # The input queue's feeder thread ended before the download returned: left to the
    # interpreter's exit, it could be frozen between unlinking the queue's semaphores and
    # telling the resource tracker, which then warns of a leak (1 run in 210 here).
    assert threads == str(["MainThread"])
    assert "leaked" not in proc.stderr, proc.stderr
    assert len(list(Layout.at(tmp_path).images.rglob("*.jpg"))) == 8


@pytest.mark.parametrize("slots", [1, 3])
def test_at_most_decode_slots_photos_decode_at_once(server, tmp_path, monkeypatch, slots):
    lock, active, peak = threading.Lock(), [0], [0]
    real = photo.process_image

    def tracked(*args, **kwargs):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)  # long enough for the other threads to arrive
        with lock:
            active[0] -= 1
        return real(*args, **kwargs)

    monkeypatch.setattr(photo, "process_image", tracked)  # the name download_one calls
    config = DownloadConfig(any_image_host=True, workers=6, decode_slots=slots, max_retries=0)
    records = [_record(f"{i}", f"{server.base}/ok.jpg") for i in range(12)]
    out = list(download_records(records, Layout.at(tmp_path), config))
    assert [r.status for r in out] == [Status.DOWNLOADED] * 12
    assert peak[0] == slots  # with 6 threads and 12 photos every slot fills


def test_a_consumer_that_stops_early_lets_the_worker_processes_exit(tmp_path, monkeypatch):
    # Each child holds 300 records when the consumer quits after the first; their ~135 kB of
    # results fill the pipe nobody reads. A child must exit anyway, not wait until the parent's
    # join times out (total_timeout + 10 s per process) and terminates it.
    terminated: list[str] = []
    spawn_process = multiprocessing.get_context("spawn").Process
    real_terminate = spawn_process.terminate

    def spy(self):
        terminated.append(self.name)
        real_terminate(self)

    monkeypatch.setattr(spawn_process, "terminate", spy)
    config = DownloadConfig(any_image_host=True,
                            workers=32, per_host=32, processes=2, max_in_flight=300,
                            max_retries=0, total_timeout=1.0)
    # A slow 404: every child has pulled its 300 records before the first result arrives.
    with ScriptedServer({"/gone.jpg": Reply(404, b"gone", delay=0.05)}) as srv:
        records = (_record(f"{i}", f"{srv.base}/gone.jpg") for i in range(2000))
        results = download_records(records, Layout.at(tmp_path), config)
        assert next(results).error == "http_404"
        results.close()
    assert terminated == []


@pytest.mark.timeout(120)  # the hang guard; the join timeout below is 610 s
def test_a_worker_process_that_dies_is_an_error_not_a_hang(tmp_path):
    # The killed worker may die holding the input queue's lock, which blocks the survivor for
    # good: it must be stopped at once, not after its join timeout (total_timeout + 10 s).
    config = DownloadConfig(any_image_host=True,
                            workers=2, per_host=4, processes=2, max_in_flight=4, max_retries=0,
                            total_timeout=600.0)
    before = set(multiprocessing.active_children())
    with ScriptedServer({"/slow.jpg": Reply(404, b"gone", delay=0.2)}) as srv:
        records = (_record(f"{i}", f"{srv.base}/slow.jpg") for i in range(200))
        results = download_records(records, Layout.at(tmp_path), config)
        assert next(results).error == "http_404"  # both workers are running
        workers = sorted(set(multiprocessing.active_children()) - before, key=lambda p: p.name)
        assert [p.name for p in workers] == ["download-proc-0", "download-proc-1"]
        os.kill(workers[0].pid, signal.SIGKILL)
        with pytest.raises(DownloadWorkerLost, match="download-proc-0: exit code -9"):
            for _ in results:
                pass
    assert not workers[1].is_alive()


def test_remove_partial_writes_deletes_only_temp_files(tmp_path):
    layout = Layout.at(tmp_path)
    image = layout.image_path("1207")
    atomic_write_bytes(image, b"jpeg bytes", parents=True)
    left = temp_path(image)  # the name a writer killed mid-write leaves
    left.write_bytes(b"half a jp")
    assert download.remove_partial_writes(layout.images) == 1
    assert not left.exists() and image.read_bytes() == b"jpeg bytes"
    assert download.remove_partial_writes(layout.images) == 0


# ---- ids from the network never become paths -------------------------------------------------
def _files_under(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def test_bad_photo_ids_are_recorded_never_used_as_paths(server, tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim.jpg"  # an id "/…/victim" that 404s would unlink this file
    victim.write_bytes(b"not yours")
    bad = {
        str(tmp_path / "victim"): "/gone.jpg",   # absolute path, and the image 404s
        str(tmp_path / "written"): "/ok.jpg",    # absolute path, and the image is fine
        "../../../evil": "/ok.jpg",              # climbs out of images/NN/
        "1/../../x": "/ok.jpg",
        "12\x0034": "/ok.jpg",                   # NUL: open() raises ValueError
        "9" * 300: "/ok.jpg",                    # digits, but a file name too long to write
        "１２３": "/ok.jpg",                      # non-ASCII digits
        "": "/ok.jpg",
    }
    records = [_record(pid, server.base + path) for pid, path in bad.items()]
    records.append(_record("4242", server.base + "/ok.jpg"))
    before = _files_under(tmp_path)
    got = {r.photo_id: r for r in download_records(records, Layout.at(out), CONFIG)}
    assert {pid: (got[pid].status, got[pid].error) for pid in bad} == {
        pid: (Status.DOWNLOAD_FAILED, "bad_id") for pid in bad}
    assert got["4242"].status is Status.DOWNLOADED  # the batch goes on
    assert victim.read_bytes() == b"not yours"
    new = _files_under(tmp_path) - before
    assert new and all(p == "out" or p.startswith("out/") for p in new)
    assert _files_under(out / "images") == {"42", "42/4242.jpg"}


def test_image_path_refuses_anything_but_a_plain_id(tmp_path):
    layout = Layout.at(tmp_path / "out")
    assert layout.image_path("7") == tmp_path / "out" / "images" / "07" / "7.jpg"
    for pid in ("/tmp/x", "../../evil", "1/../../x", "1\x00", "9" * 21, "-1", "1.5", " 1"):
        with pytest.raises(ValueError, match="not a Flickr id"):
            layout.image_path(pid)
    # A fan-out folder that is a symlink leading elsewhere is refused too.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "images").mkdir(parents=True)
    (tmp_path / "out" / "images" / "13").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="outside"):
        layout.image_path("13")
