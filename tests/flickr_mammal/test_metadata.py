"""Search from a local metadata dump (flickr_mammal/dump/): rules, cap, resume, build."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import read_classes
from flickr_mammal.dump import search as dump_search
from flickr_mammal.dump.errors import DumpScanMismatch
from flickr_mammal.dump.match import LICENSE_IDS, license_id
from flickr_mammal.dump.read import MetadataConfig
from flickr_mammal.dump.rows import rank_key
from flickr_mammal.records import Status
from flickr_mammal.shards import read_index
from pipelines import build_dataset
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal.fakeflickr import FakeFlickr, generate_photos

REPO = Path(__file__).resolve().parents[2]
RULE_CLASSES = ("cat", "dog", "lion", "sea lion", "zebra")


def search(out: Path, dump: Path, classes=RULE_CLASSES, per_class: int = 100, **meta) -> dict:
    config = BuildConfig(out=out, classes=classes, per_class=per_class, min_upload_date=d.LO,
                         max_upload_date=d.HI, stages=("search",), progress=False,
                         metadata=MetadataConfig(str(dump), **meta))
    return build(config).stats


def catalog_rows(out: Path) -> dict[str, tuple]:
    with Catalog.open(out / "catalog.sqlite") as cat:
        return {r.photo_id: (r.class_name, str(r.status), r.error, r.license, r.url, r.title,
                             r.latitude, r.date_upload, r.date_taken, r.owner)
                for r in cat.records()}


@pytest.mark.parametrize("suffix", [".tsv", ".bz2", ".parquet"])
def test_match_rules_filters_and_counts(tmp_path, suffix):
    dump = d.write_dump(d.RULE_ROWS, tmp_path / f"dump{suffix}")
    stats = search(tmp_path / "out", dump)
    rows = catalog_rows(tmp_path / "out")
    got = {pid: (c, s, e.split(":")[0]) for pid, (c, s, e, *_rest) in rows.items()}
    assert got == {
        "101": ("sea lion", "searched", ""), "102": ("sea lion", "searched", ""),
        "105": ("dog", "searched", ""), "106": ("cat", "ambiguous", "ambiguous"),
        "107": ("lion", "ambiguous", "ambiguous"), "112": ("cat", "download_failed", "bad_geo"),
        "113": ("zebra", "searched", ""), "114": ("dog", "download_failed", "no_url"),
        "115": ("dog", "searched", ""),
    }
    assert rows["106"][2] == "ambiguous: found for classes cat, dog"
    assert rows["113"][3] == 3 and rows["105"][3] == 4  # licence names -> Flickr ids
    assert rows["101"][5] == "A Sea Lion on the rocks"  # decoded like an API title
    assert rows["101"][7:] == (d.LO + 1000, "2011-11-07 07:20:22", "61048402@N08")
    assert rows["105"][4] == "http://farm7.staticflickr.com/7205/105_5192fe3be9.jpg"
    assert rows["115"][4] == "https://live.staticflickr.com/7205/115_5192fe3be9_z.jpg"
    meta = stats["search"]["metadata"]
    assert (meta["rows"], meta["matched"], meta["candidates"], meta["ambiguous_photos"]) == \
        (15, 13, 9, 2)
    assert meta["dropped"] == {"bad_id": 0, "video": 1, "license": 1, "date": 1,
                               "no_coordinates": 1}
    assert stats["search"]["ambiguous"] == 2


def test_license_table():
    assert license_id("Attribution-NonCommercial-ShareAlike License") == 1
    assert license_id("Attribution-NoDerivs+License") == 6
    assert license_id("http://creativecommons.org/licenses/by-nc/2.0/") == 2
    assert license_id("https://creativecommons.org/publicdomain/zero/1.0/") == 9
    assert license_id(5) == 5 and license_id("7") == 7 and license_id("GPL") == -1
    assert sorted(LICENSE_IDS.values()) == list(range(11))


def test_per_class_cap_keeps_the_smallest_keyed_hashes_whatever_the_row_order(tmp_path):
    rows = [d.row(1000 + i, "cat" if i % 2 else "dog") for i in range(40)]
    shuffled = random.Random(1).sample(rows, len(rows))
    search(tmp_path / "a", d.write_dump(rows, tmp_path / "a.tsv"), classes=("cat", "dog"),
           per_class=5)
    search(tmp_path / "b", d.write_dump(shuffled, tmp_path / "b.parquet"),
           classes=("cat", "dog"), per_class=5)
    a, b = catalog_rows(tmp_path / "a"), catalog_rows(tmp_path / "b")
    assert a.keys() == b.keys()
    cats = sorted((str(1000 + i) for i in range(1, 40, 2)), key=lambda p: rank_key(p, 0))
    assert sorted(p for p, v in a.items() if v[0] == "cat") == sorted(cats[:5])
    # a larger cap resumes the same scan and adds the next ones only
    search(tmp_path / "a", tmp_path / "a.tsv", classes=("cat", "dog"), per_class=8)
    grown = catalog_rows(tmp_path / "a")
    assert sorted(p for p, v in grown.items() if v[0] == "cat") == sorted(cats[:8])
    assert a.keys() <= grown.keys()


def _big_rows(n: int = 3000) -> list[dict]:
    words = ("cat", "dog", "zebra", "tree", "lake", "sunset")
    rng = random.Random(7)
    return [d.row(10_000 + i, "+".join(rng.choice(words) for _ in range(3)),
                  description="long+text+" * rng.randint(0, 30),
                  lat=None if i % 5 == 0 else 40.0) for i in range(n)]


@pytest.mark.parametrize("suffix", [".tsv", ".bz2", ".parquet"])
def test_interrupted_scan_resumes_to_the_same_result(tmp_path, suffix, monkeypatch):
    dump = tmp_path / f"dump{suffix}"
    if suffix == ".parquet":
        d.write_parquet(_big_rows(), dump, row_group_size=400)
    else:
        d.write_tsv(_big_rows(), dump)
    small = {"chunk_bytes": 1 << 16, "readers": 2}  # the reader thread too
    full = search(tmp_path / "full", dump, classes=("cat", "dog", "zebra"), **small)
    calls = []
    real = dump_search.stage_rows

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(dump_search, "stage_rows", failing)
    with pytest.raises(RuntimeError, match="injected"):
        search(tmp_path / "cut", dump, classes=("cat", "dog", "zebra"), **small)
    with Catalog.open(tmp_path / "cut" / "catalog.sqlite") as cat:
        assert cat.count() == 0  # nothing selected before the scan is complete
        done = cat.connection.execute("SELECT count(*) FROM dump_chunks").fetchone()[0]
    assert done == 2
    calls.clear()
    monkeypatch.setattr(dump_search, "stage_rows", real)
    resumed = search(tmp_path / "cut", dump, classes=("cat", "dog", "zebra"), **small)
    assert resumed["search"] == full["search"]
    assert catalog_rows(tmp_path / "cut") == catalog_rows(tmp_path / "full")
    total = full["search"]["metadata"]["rows"]
    assert total == 3000 and full["search"]["metadata"]["dropped"]["no_coordinates"] > 0


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from flickr_mammal.dump import search as dump_search
    real, calls = dump_search.stage_rows, []
    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 3:  # chunks 0 and 1 are committed; die inside chunk 2
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    dump_search.stage_rows = dying
    from pipelines.build_dataset import main
    sys.exit(main(sys.argv[1:]))
""")


def kill_mid_scan_then_resume(dump: Path, tmp_path: Path) -> None:
    """A real SIGKILL of the command line scanning ``dump`` after its second chunk commit, then
    the same command: the resumed catalog and stats equal those of one uninterrupted run."""
    args = ["--classes", "cat,dog,zebra", "--per-class", "50", "--stages", "search",
            "--min-upload-date", str(d.LO), "--max-upload-date", str(d.HI), "--no-progress",
            "--metadata", str(dump), "--metadata-chunk-mb", "0.0625"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cut = tmp_path / "cut"
    proc = subprocess.run([sys.executable, "-c", _KILLER, "--out", str(cut), *args], cwd=REPO,
                          env=env, capture_output=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    with Catalog.open(cut / "catalog.sqlite") as cat:
        assert cat.connection.execute("SELECT count(*) FROM dump_chunks").fetchone()[0] == 2
    assert build_dataset.main(["--out", str(cut), *args]) == 0
    assert build_dataset.main(["--out", str(tmp_path / "full"), *args]) == 0
    assert catalog_rows(cut) == catalog_rows(tmp_path / "full")
    assert json.loads((cut / "stats.json").read_text()) == \
        json.loads((tmp_path / "full" / "stats.json").read_text())


def test_kill_9_mid_scan_then_resume_matches(tmp_path):
    kill_mid_scan_then_resume(d.write_tsv(_big_rows(), tmp_path / "dump.tsv"), tmp_path)


def test_changed_options_are_refused(tmp_path, capsys):
    dump = d.write_tsv(d.RULE_ROWS, tmp_path / "dump.tsv")
    base = ["--out", str(tmp_path / "out"), "--stages", "search", "--no-progress",
            "--metadata", str(dump)]
    assert build_dataset.main([*base, "--classes", "cat"]) == 0
    capsys.readouterr()
    assert build_dataset.main([*base, "--classes", "cat,dog"]) == 2
    err = capsys.readouterr().err.strip()
    # the build's own guard (build_guard) or the scan's check: either refuses in one line
    assert len(err.splitlines()) == 1 and "--out" in err
    assert "other classes" in err or "--classes cat (now cat,dog)" in err


def test_column_mapping_errors_are_one_line(tmp_path, capsys):
    renamed = d.write_parquet(d.RULE_ROWS, tmp_path / "ids.parquet",
                              rename={"photoid": "id", "usertags": "tags"})
    base = ["--out", str(tmp_path / "out"), "--stages", "search", "--no-progress",
            "--classes", "cat,dog", "--metadata", str(renamed)]
    assert build_dataset.main(base) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "no column 'photoid' for field photo_id" in err
    assert "--metadata-columns photo_id=COLUMN" in err
    assert build_dataset.main([*base, "--metadata-columns", "photo_id=id,tags=labels"]) == 2
    assert "no column 'labels' for field tags" in capsys.readouterr().err
    assert build_dataset.main([*base, "--metadata-columns", "photo_id=id,tags=tags"]) == 0
    capsys.readouterr()
    assert build_dataset.main([*base, "--metadata-columns", "colour=x"]) == 2
    assert "unknown field(s) colour" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\t2\t3\n")
    assert build_dataset.main([*base[:-1], str(bad)]) == 2
    assert "line 1 has 3 tab-separated columns" in capsys.readouterr().err


def test_build_from_a_dump_end_to_end_with_a_local_image_server(tmp_path):
    photos = generate_photos(["cat", "dog", "zebra"], 6, seed=5, min_upload_date=d.LO,
                             max_upload_date=d.HI)
    with FakeFlickr(photos) as fake:
        rows = [d.row(int(p["id"]), f"my+{name}", lat=p["latitude"], lon=p["longitude"],
                      url=fake.image_url(p["id"]))
                for name, group in photos.items() for p in group]
        rows.append(d.row(1, "dog", lat=None, lon=None))  # dropped: no coordinates
        dump = d.write_dump(rows, tmp_path / "dump.tsv.bz2")
        out = tmp_path / "out"
        code = build_dataset.main([
            "--out", str(out), "--metadata", str(dump), "--classes", "cat,dog,zebra",
            "--image-hosts", fake.base_url.split("//", 1)[1],
            "--classifier", "none", "--min-upload-date", str(d.LO), "--max-upload-date",
            str(d.HI), "--val-fraction", "0.2", "--shard-samples", "4", "--no-progress",
            "--workers", "2", "--download-processes", "1"])
        assert code == 0
        assert fake.calls["api"] == 0  # no Flickr API call, no key
    manifest = pd.read_parquet(out / "manifest.parquet")
    sizes = manifest.groupby("class_name", observed=True).size().to_dict()
    assert sizes == {"cat": 6, "dog": 6, "zebra": 6}
    index = read_index(out / "shards")
    assert sorted(index["photo_id"]) == sorted(manifest["photo_id"])
    assert all((out / "shards" / name).is_file() for name in index["shard"].unique())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["search"]["metadata"]["dropped"]["no_coordinates"] == 1
    assert stats["status"][str(Status.KEPT)] == {"": 18}


@pytest.mark.parametrize("suffix", [".tsv", ".bz2", ".gz"])
def test_tsv_chunks_are_whole_lines_and_resume_at_their_offsets(tmp_path, suffix):
    import gzip

    from flickr_mammal.dump.read import tsv_chunks

    lines = [b"x" * n + b"\n" for n in (10, 70_000, 5, 40_000, 30_000, 3)] + [b"no-newline"]
    text = b"".join(lines)
    path = tmp_path / f"f{suffix}"
    pack = {".bz2": d.bz2.compress, ".gz": gzip.compress}.get(suffix, bytes)
    path.write_bytes(pack(text))
    chunks = [(o, bytes(c)) for o, c in tsv_chunks(path, 1 << 16)]  # views of decompressed
    assert b"".join(c for _, c in chunks) == text
    assert all(c.endswith(b"\n") for _, c in chunks[:-1])
    # 64 KiB of whole lines each; the 70,001-byte line alone; the unterminated tail last
    assert [(o, len(c)) for o, c in chunks] == [(0, 11), (11, 70_001), (70_012, 40_007),
                                                (110_019, 30_005), (140_024, 10)]
    for i, (offset, _) in enumerate(chunks):  # a resumed read meets the same chunks
        assert [(o, bytes(c)) for o, c in tsv_chunks(path, 1 << 16, offset)] == chunks[i:]


def test_the_command_line_starts_without_torch():
    """A build that does not clean with a classifier never imports torch or timm (seconds)."""
    code = ("import sys, pipelines.build_dataset as b; "
            "b.config_from_args(b.parser().parse_args(['--out', 'x', '--api-key', 'k'])); "
            "print(sorted(m for m in ('torch', 'timm', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


ROBIN = "name,synonyms,exclude\nrobin,redbreast,robin hood\n"


@pytest.mark.parametrize("other", [
    "name,synonyms,exclude\nrobin,redbreast;ruddock,robin hood\n",   # one more synonym
    "name,synonyms,exclude\nrobin,redbreast,\n",                     # no exclusion
    "name,search,synonyms,exclude\nrobin,erithacus,redbreast,robin hood\n",  # another search
])
def test_class_texts_are_part_of_the_scan_identity(tmp_path, other):
    dump = d.write_dump([d.row(1, "redbreast"), d.row(2, "ruddock"), d.row(3, "robin+hood")],
                        tmp_path / "dump.tsv")
    config = MetadataConfig(str(dump))

    def scan(text: str, name: str) -> dict:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return dump_search.search_dump(config, cat, classes=read_classes(path).classes,
                                       licenses=[4], window=(d.LO, d.HI), per_class=10)

    with Catalog.open(tmp_path / "catalog.sqlite") as cat:
        assert scan(ROBIN, "a.csv")["per_class"]["robin"]["candidates"] == 1
        assert scan(ROBIN, "same-content.csv")["rows"] == 3  # same texts: the same scan
        with pytest.raises(DumpScanMismatch, match=r"other class texts;") as err:
            scan(other, "b.csv")
        assert "\n" not in str(err.value)
