"""A dump row's image URL is held to Flickr's image hosts (flickr_mammal/image_hosts.py): other
hosts and schemes are recorded ``url_refused`` and never fetched; credentials never leave."""

from __future__ import annotations

import sqlite3

from flickr_mammal.catalog import Catalog
from pipelines import build_dataset
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal import sample_images as s
from tests.flickr_mammal.scripted_server import Reply, ScriptedServer


def _catalog(out) -> dict[str, tuple[str, str, str]]:
    with Catalog.open(out / "catalog.sqlite") as cat:
        return {r.photo_id: (str(r.status), r.error, r.url) for r in cat.records()}


def test_dump_urls_off_the_image_hosts_are_refused_and_never_fetched(tmp_path):
    jpeg = s.jpeg_ok()
    with ScriptedServer({"/internal-admin/x.jpg": Reply(body=jpeg)}) as internal, \
            ScriptedServer({"/ok.jpg": Reply(body=jpeg)}) as cdn:
        cdn_host = cdn.base.split("//", 1)[1]
        rows = [
            d.row(201, "cat", url=internal.base + "/internal-admin/x.jpg"),   # another port
            d.row(202, "cat", url="file:///etc/passwd"),                       # another scheme
            d.row(203, "cat", url=cdn.base.replace("//", "//user:s3cr3t@") + "/ok.jpg"),
            d.row(204, "cat", url="ftp://live.staticflickr.com/1/204_a.jpg"),
        ]
        dump = d.write_tsv(rows, tmp_path / "dump.tsv")
        out = tmp_path / "out"
        code = build_dataset.main([
            "--out", str(out), "--metadata", str(dump), "--classes", "cat", "--classifier",
            "none", "--min-upload-date", str(d.LO), "--max-upload-date", str(d.HI),
            "--image-hosts", cdn_host, "--no-progress", "--workers", "2",
            "--download-processes", "1", "--val-fraction", "0"])
        assert code == 0
        assert internal.hits["/internal-admin/x.jpg"] == 0
        assert cdn.hits["/ok.jpg"] == 1
    got = _catalog(out)
    assert got["201"][:2] == ("download_failed", "url_refused")
    assert got["202"][:2] == ("download_failed", "url_refused")
    assert got["204"][:2] == ("download_failed", "url_refused")
    assert got["203"] == ("kept", "", f"{cdn.base}/ok.jpg")  # credentials stripped
    # nothing the build wrote holds the password: catalog, manifest, shards, stats, report
    for path in out.rglob("*"):
        if path.is_file():
            assert b"s3cr3t" not in path.read_bytes(), path
    with sqlite3.connect(out / "catalog.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM dump_matches WHERE photo LIKE '%s3cr3t%'"
                            ).fetchone()[0] == 0


def test_the_same_dump_without_image_hosts_refuses_the_local_server(tmp_path):
    with ScriptedServer({"/ok.jpg": Reply(body=s.jpeg_ok())}) as cdn:
        dump = d.write_tsv([d.row(301, "cat", url=cdn.base + "/ok.jpg")], tmp_path / "d.tsv")
        code = build_dataset.main([
            "--out", str(tmp_path / "out"), "--metadata", str(dump), "--classes", "cat",
            "--classifier", "none", "--min-upload-date", str(d.LO), "--max-upload-date",
            str(d.HI), "--no-progress", "--stages", "search,download"])
        assert code == 0
        assert cdn.hits["/ok.jpg"] == 0
    assert _catalog(tmp_path / "out")["301"][:2] == ("download_failed", "url_refused")
