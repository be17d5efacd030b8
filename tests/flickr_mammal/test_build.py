"""End-to-end builds against the fake Flickr, and kill -9 / resume (tests/.../build_fixtures)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from flickr_mammal.build import BuildConfig, build, parse_date
from flickr_mammal.catalog import Catalog
from flickr_mammal.clean.stage import CleanConfig
from flickr_mammal.download import DownloadConfig
from flickr_mammal.layout import Layout
from flickr_mammal.manifest import MANIFEST_COLUMNS
from flickr_mammal.records import PhotoRecord, Status
from flickr_mammal.report import datasheet_section
from flickr_mammal.shards import read_index
from skewtools.io import temp_path
from tests.flickr_mammal import build_fixtures as fx
from tests.flickr_mammal.fakeflickr import FakeFlickr

REPO = Path(__file__).resolve().parents[2]


def config(out: Path, endpoint: str, **changes) -> BuildConfig:
    base = BuildConfig(
        out=out, api_key=fx.API_KEY, flickr_endpoint=endpoint, classes=fx.CLASSES,
        per_class=100, min_upload_date=fx.LO, max_upload_date=fx.HI, rate_limit=3_600_000,
        download=DownloadConfig(workers=4, backoff_base=0.05), clean=CleanConfig("none"),
        val_fraction=0.2, shard_samples=4, progress=False,
    )
    return dataclasses.replace(base, **changes)


def test_build_counts_every_outcome(default_build):
    out = default_build
    stats = json.loads((out / "stats.json").read_text())
    assert stats["records"] == fx.EXPECTED["records"]
    assert stats["download"]["failed"] == fx.EXPECTED["download_failed"]
    assert stats["download"]["failures"] == {"bad_geo": 3, "http_404": 3, "no_url": 3,
                                             "not_an_image": 3, "truncated": 3}
    assert stats["search"]["ambiguous"] == fx.EXPECTED["ambiguous"]
    assert stats["download"]["duplicates"] == fx.EXPECTED["duplicate"]
    assert stats["clean"]["kept"] == fx.EXPECTED["kept"]
    assert stats["geocode"]["geo_status"] == {"antarctica": 1, "null_island": 1, "ok": 29}
    assert {c: s.get("kept", 0) for c, s in stats["per_class"].items()} == \
        fx.EXPECTED_KEPT_PER_CLASS
    assert stats["shards"]["samples"] == fx.EXPECTED["kept"]


def test_manifest_and_shards_hold_the_kept_images(default_build):
    out = default_build
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert list(manifest.columns) == list(MANIFEST_COLUMNS)
    assert len(manifest) == manifest["photo_id"].nunique() == fx.EXPECTED["kept"]
    assert (manifest["key"] == "fm" + manifest["photo_id"]).all()
    assert manifest.groupby("class_name", observed=True).size().to_dict() == \
        fx.EXPECTED_KEPT_PER_CLASS
    assert (manifest["latitude"] == manifest["latitude"].round(2)).all()
    assert set(manifest["split"]) == {"train", "val"}
    # val = round(0.2 * n) per class: 10 -> 2, 11 -> 2 (half to even), 10 -> 2
    assert (manifest["split"] == "val").sum() == 6
    index = read_index(out / "shards")
    assert sorted(index["photo_id"]) == sorted(manifest["photo_id"])
    assert dict(zip(manifest["photo_id"], manifest["shard"], strict=True)) == \
        dict(zip(index["photo_id"], index["shard"], strict=True))
    assert all((out / "shards" / name).is_file() for name in index["shard"].unique())
    unplaced = manifest[manifest["continent"].isna()]        # null, and geo_status says why
    assert unplaced["class_name"].tolist() == ["dog", "dog"]
    assert sorted(unplaced["geo_status"]) == ["antarctica", "null_island"]
    assert dict(zip(index["key"], index["geo_status"], strict=True)) == \
        dict(zip(manifest["key"], manifest["geo_status"], strict=True))


def test_report_tables(default_build):
    out = default_build
    table = pd.read_csv(out / "report" / "class_by_continent.csv", index_col="class_name")
    assert table.index.tolist() == list(fx.CLASSES)
    assert table["total"].to_dict() == fx.EXPECTED_KEPT_PER_CLASS
    assert table.loc["dog", "unplaced"] == 2
    top3 = pd.read_csv(out / "report" / "top3_per_continent.csv")
    assert set(top3["rank"]) <= {1, 2, 3}
    assert ((top3["share"] > 0) & (top3["share"] <= 1)).all()
    for name in ("heatmap_continent.png", "heatmap_subcontinent.png", "top3_per_continent.md",
                 "class_by_subcontinent.csv"):
        assert (out / "report" / name).stat().st_size > 0


def test_dataset_md_shows_this_builds_tables(default_build):
    """DATASET.md's statistics section was generated from this fixture build (see §10 there)."""
    out = default_build
    section = datasheet_section(
        pd.read_parquet(out / "manifest.parquet"), json.loads((out / "stats.json").read_text()),
        "Synthetic local-server build (end-to-end test fixture, NOT real data)")
    assert section in (REPO / "DATASET.md").read_text(), (
        "regenerate: python -m tests.flickr_mammal.build_fixtures /tmp/fm-synthetic && "
        "python -m pipelines.dataset_report --build /tmp/fm-synthetic --datasheet DATASET.md "
        "--title 'Synthetic local-server build (end-to-end test fixture, NOT real data)'")


def test_dataset_report_builds_the_tables_once(default_build, tmp_path, monkeypatch):
    """pipelines.dataset_report: report/ and the datasheet share one set of tables."""
    from flickr_mammal import report
    from pipelines import dataset_report

    out = default_build
    title = "Synthetic local-server build (end-to-end test fixture, NOT real data)"
    expected = datasheet_section(pd.read_parquet(out / "manifest.parquet"),
                                 json.loads((out / "stats.json").read_text()), title)
    counted = []
    real_count_table = report.count_table

    def counting_count_table(manifest, level):
        counted.append(level)
        return real_count_table(manifest, level)

    monkeypatch.setattr(report, "count_table", counting_count_table)
    sheet = tmp_path / "sheet.md"
    sheet.write_text(f"intro\n{report.SECTION_BEGIN}\nold\n{report.SECTION_END}\n")
    assert dataset_report.main(["--build", str(out), "--datasheet", str(sheet),
                                "--title", title]) == 0
    assert sheet.read_text() == f"intro\n{expected}\n"
    assert sorted(counted) == ["continent", "subcontinent"]


def test_api_key_is_written_nowhere(default_build):
    for path in default_build.rglob("*"):
        if path.is_file():
            assert fx.API_KEY.encode() not in path.read_bytes(), path


def test_second_run_does_no_work_and_changes_nothing(default_build, tmp_path):
    out = tmp_path / "build"
    shutil.copytree(default_build, out)
    before = (out / "manifest.parquet").read_bytes()
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        summary = build(config(out, fake.endpoint))
        assert fake.search_log == [] and fake.calls["image"] == 0
    assert fx.API_KEY not in repr(summary)
    assert (out / "manifest.parquet").read_bytes() == before


def test_per_class_cap_resumes_and_grows(tmp_path):
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        build(config(tmp_path, fake.endpoint, stages=("search",), per_class=5))
        with Catalog.open(tmp_path / "catalog.sqlite") as cat:
            assert cat.group_counts("class_name") == {("cat",): 5, ("dog",): 5, ("zebra",): 5}
        calls = len(fake.search_log)
        build(config(tmp_path, fake.endpoint, stages=("search",), per_class=5))
        assert len(fake.search_log) == calls  # cap reached: no search call at all
        build(config(tmp_path, fake.endpoint, stages=("search",), per_class=12))
        with Catalog.open(tmp_path / "catalog.sqlite") as cat:
            assert cat.group_counts("class_name") == {("cat",): 12, ("dog",): 12,
                                                      ("zebra",): 12}


def test_rejected_key_stops_before_any_work(tmp_path):
    from flickr_mammal.flickr_api import FlickrAuthError

    with FakeFlickr(fx.photos(), api_key="the-right-key") as fake:
        with pytest.raises(FlickrAuthError):
            build(config(tmp_path / "out", fake.endpoint))
    assert not (tmp_path / "out").exists()


def test_stage_subset_reruns_clean_with_a_real_classifier(tmp_path):
    """search+download first, then only clean with efficientnet-lite0: every image judged."""
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        build(config(tmp_path, fake.endpoint, stages=("search", "download")))
    lite0 = CleanConfig("efficientnet_lite0_pypi", device="cpu", num_workers=0, batch_size=16)
    build(config(tmp_path, "http://127.0.0.1:9/unused", api_key="", stages=("clean",),
                 clean=lite0))
    with Catalog.open(tmp_path / "catalog.sqlite") as cat:
        judged = cat.count(Status.KEPT) + cat.count(Status.REJECTED)
        assert judged == fx.EXPECTED["kept"] and cat.count(Status.DOWNLOADED) == 0
        scores = [r.clean_score for r in cat.records((Status.KEPT, Status.REJECTED))]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert cat.get_meta("clean")["classifier"] == "efficientnet_lite0_pypi"


def test_download_stage_removes_temp_files_of_an_interrupted_run(tmp_path):
    left = temp_path(Layout.at(tmp_path).image_path("1007"))  # a writer killed mid-write
    left.parent.mkdir(parents=True)
    left.write_bytes(b"half a jp")
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY) as fake:
        build(config(tmp_path, fake.endpoint, stages=("search", "download")))
    assert not left.exists()
    assert any(Layout.at(tmp_path).images.glob("*/*.jpg"))


def _downloaded(catalog_path: Path) -> int:
    if not catalog_path.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM records WHERE status = ?",
                                (str(Status.DOWNLOADED),)).fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def _spawned_children(pid: int) -> list[int]:
    """Live multiprocessing "spawn" workers of ``pid`` (Linux /proc); not its resource tracker,
    which is a child too."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_mid_download_then_resume_matches_an_uninterrupted_build(tmp_path):
    full, out = tmp_path / "uninterrupted", tmp_path / "crashed"
    # One server for both builds: image URLs (in manifest and shards) carry its port.
    with FakeFlickr(fx.photos(), api_key=fx.API_KEY, image_delay=0.15) as fake:
        build(config(full, fake.endpoint))
        args = fx.build_args(out, fake.endpoint, "--workers", "1", "--commit-every", "2",
                             "--log-level", "DEBUG")  # urllib3 logs request URLs at DEBUG
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
        log_path = tmp_path / "stderr.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "pipelines.build_dataset", *args],
                                    cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log)
            try:
                deadline = time.monotonic() + 120  # a guard against a hang, not a timing check
                while _downloaded(out / "catalog.sqlite") < 4:
                    assert proc.poll() is None, log_path.read_text()[-2000:]
                    assert time.monotonic() < deadline, "the build never started downloading"
                    time.sleep(0.05)
                workers = _spawned_children(proc.pid)  # download processes (2 by default)
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait()
        # The orphaned download processes end with their parent instead of fetching on.
        assert len(workers) == 2
        while any(_running(pid) for pid in workers):
            assert time.monotonic() < deadline, f"orphaned download processes live on: {workers}"
            time.sleep(0.05)
        logged = log_path.read_text()
        assert "/services/rest/" in logged           # the API calls were logged ...
        assert fx.API_KEY not in logged               # ... with the key redacted
        assert not (out / "manifest.parquet").exists()  # it really died mid-way
        with Catalog.open(out / "catalog.sqlite") as cat:
            done_at_kill = cat.count(Status.DOWNLOADED)
            searched_at_kill = cat.count(Status.SEARCHED)
            # Images the killed run wrote but had not recorded yet: adopted, not fetched.
            written = sum(Layout.at(out).image_path(r.photo_id).exists()
                          for r in cat.records(Status.SEARCHED))
        assert done_at_kill >= 4 and searched_at_kill > 0
        before_images, before_search = fake.calls["image"], len(fake.search_log)
        build(config(out, fake.endpoint))
        # Only the records still waiting were fetched; the search was not run again.
        assert fake.calls["image"] - before_images == searched_at_kill - written
        assert len(fake.search_log) == before_search
    resumed = pd.read_parquet(out / "manifest.parquet")
    expected = pd.read_parquet(full / "manifest.parquet")
    pd.testing.assert_frame_equal(resumed, expected)
    resumed_stats = json.loads((out / "stats.json").read_text())
    expected_stats = json.loads((full / "stats.json").read_text())
    assert resumed_stats["status"] == expected_stats["status"]
    assert resumed_stats == expected_stats
    for shard in sorted((full / "shards").glob("*.tar")):
        assert (out / "shards" / shard.name).read_bytes() == shard.read_bytes(), shard.name


def test_parse_date():
    assert parse_date("1970-01-02") == 86_400
    assert parse_date("1500000000") == 1_500_000_000
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_date("02/01/1970")


def test_config_needs_a_key_only_to_search(tmp_path):
    with pytest.raises(ValueError, match="API key"):
        BuildConfig(out=tmp_path)
    assert BuildConfig(out=tmp_path, stages=("clean",)).api_key == ""
    with pytest.raises(ValueError, match="stages"):
        BuildConfig(out=tmp_path, stages=("fetch",))
    assert "api_key" not in BuildConfig(out=tmp_path, api_key="x").to_meta()


# ---- bad photo ids from the API ---------------------------------------------------------------
def _cat_photos(n: int = 6) -> list[dict]:
    from tests.flickr_mammal.fakeflickr import generate_photos
    return generate_photos(["cat"], n, seed=5, min_upload_date=fx.LO, max_upload_date=fx.HI)["cat"]


def test_bad_ids_from_the_api_are_recorded_and_nothing_leaves_out(tmp_path):
    out = tmp_path / "out"
    victim = tmp_path / "victim.jpg"  # an id naming it would overwrite (ok) or unlink (404) it
    victim.write_bytes(b"not yours")
    photos = _cat_photos(8)
    bad_ids = [str(tmp_path / "victim"), "../../../evil", "1/../../x", "12\x0034", "7" * 300]
    for photo, bad in zip(photos, bad_ids, strict=False):
        photo["id"] = bad
    with FakeFlickr({"cat": photos}, api_key=fx.API_KEY) as fake:
        summary = build(config(out, fake.endpoint, classes=("cat",)))
    assert victim.read_bytes() == b"not yours"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "victim.jpg"]
    with Catalog.open(out / "catalog.sqlite") as catalog:
        for bad in bad_ids:
            record = catalog.get(bad)
            assert (record.status, record.error) == (Status.DOWNLOAD_FAILED, "bad_id")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["download"]["failures"] == {"bad_id": 5}
    assert summary.kept == 3
    members = [n for t in (out / "shards").rglob("*.tar") for n in _tar_names(t)]
    assert members and all(n.startswith("fm") and ".." not in n and "/" not in n for n in members)


def _tar_names(path: Path) -> list[str]:
    import tarfile
    with tarfile.open(path) as tar:
        return tar.getnames()


def test_a_bad_record_left_searched_does_not_block_the_class_on_resume(tmp_path):
    # A catalog from before ids were checked: records whose ids cannot be paths, left in the
    # input status of each stage (an id like "/x" downloaded fine, outside --out).
    out = tmp_path / "out"
    photos = _cat_photos(4)
    with FakeFlickr({"cat": photos}, api_key=fx.API_KEY) as fake:
        cfg = config(out, fake.endpoint, classes=("cat",))
        with Catalog.open(cfg.layout.catalog) as catalog:
            good = fake.image_url(photos[0]["id"])
            catalog.update([
                PhotoRecord(photo_id=pid, owner="o", class_name="cat", label=7, latitude=1.0,
                            longitude=2.0, url=good, status=status)
                for pid, status in (("5\x006", Status.SEARCHED), ("8" * 300, Status.SEARCHED),
                                    ("/x", Status.DOWNLOADED), ("../y", Status.KEPT))])
        for _ in range(2):  # the build, then a resume: both complete the class
            summary = build(cfg)
            assert summary.kept == 4
            assert summary.stats["download"]["failures"] == {"bad_id": 4}
            assert summary.stats["search"]["pending_download"] == 0


# ---- junk and lies from the search API --------------------------------------------------------
def test_malformed_and_lying_answers_are_recorded_in_stats_not_raised(tmp_path):
    from flickr_mammal.search import SearchConfig
    photos = {"cat": _cat_photos(4), "dog": _cat_photos(4)}
    for i, p in enumerate(photos["dog"]):
        p["id"] = str(20_000_000_000 + i)
    with FakeFlickr(photos, api_key=fx.API_KEY) as fake:
        # cat: every answer malformed; dog: every answer claims a billion photos
        fake.tamper_search = lambda p: {**p, "total": "abc"} if fake.search_log[-1][
            "text"] == "cat" else {**p, "total": 10**9}
        cfg = config(tmp_path, fake.endpoint, classes=("cat", "dog"),
                     search=SearchConfig(max_calls_per_class=25))
        summary = build(cfg)
        incomplete = summary.stats["search"]["incomplete"]
        assert incomplete["cat"] == {"bad_answer": 1}
        assert incomplete["dog"]["call_budget"] >= 1
        assert json.loads((tmp_path / "stats.json").read_text())["search"]["incomplete"] == \
            incomplete
        # a resume retries what failed: with honest answers every photo is found
        fake.tamper_search = None
        summary = build(cfg)
    # over_cap slices stay (done: they gave all Flickr would give); the failed ones are gone
    assert set(summary.stats["search"]["incomplete"]) == {"dog"}
    assert set(summary.stats["search"]["incomplete"]["dog"]) == {"over_cap"}
    assert summary.kept == 8
