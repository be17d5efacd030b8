"""A dump never crashes a scan: a bad line or cell is a counted malformed row, a whole bad file
is a one-line error naming it, and memory stays bounded whatever the input (bz2 bombs)."""

from __future__ import annotations

import bz2
import gzip
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.dump.formats import format_names, get_format
from flickr_mammal.dump.read import YFCC_COLUMNS, MetadataConfig
from pipelines import build_dataset
from tests.flickr_mammal import dump_fixtures as d

REPO = Path(__file__).resolve().parents[2]


def _line(row: dict) -> bytes:
    return ("\t".join(row[c] for c in YFCC_COLUMNS) + "\n").encode()


def _scan(out: Path, dump: Path, **meta) -> dict:
    config = BuildConfig(out=out, classes=("cat",), per_class=10, min_upload_date=d.LO,
                         max_upload_date=d.HI, stages=("search",), progress=False,
                         metadata=MetadataConfig(str(dump), **meta))
    return build(config).stats["search"]["metadata"]


def _ids(out: Path) -> set[str]:
    with Catalog.open(out / "catalog.sqlite") as cat:
        return {r.photo_id for r in cat.records()}


def test_bad_tsv_lines_are_counted_and_the_scan_goes_on(tmp_path):
    bad_date, bad_accuracy = d.row(3, "cat"), d.row(4, "cat")
    bad_date["dateuploaded"] = "1e400"
    bad_accuracy["accuracy"] = "9" * 400
    text = (_line(d.row(1, "cat")) + _line(d.row(2, "cat")).replace(b"\tcat\t", b"\tcat \xff\t")
            + _line(bad_date) + _line(bad_accuracy) + _line(d.row(5, "cat")))
    for suffix in (".tsv", ".bz2"):
        dump = tmp_path / f"dump{suffix}"
        dump.write_bytes(bz2.compress(text) if suffix == ".bz2" else text)
        out = tmp_path / f"out{suffix}"
        meta = _scan(out, dump)
        assert meta["malformed_rows"] == 3 and meta["candidates"] == 2
        assert _ids(out) == {"1", "5"}
        assert _scan(out, dump) == meta  # a re-run finishes too (nothing stuck)


def test_bad_parquet_cells_are_counted_and_the_scan_goes_on(tmp_path):
    table = pq.read_table(d.write_parquet([d.row(i, "cat") for i in (1, 2, 3)],
                                          tmp_path / "p.parquet"))

    def variant(name: str, column: str, values: pa.Array) -> Path:
        path = tmp_path / f"{name}.parquet"
        pq.write_table(table.set_column(table.schema.get_field_index(column), column, values),
                       path)
        return path

    cases = {
        "inf_date": (variant("inf_date", "dateuploaded",
                             pa.array([float("inf"), d.LO + 5.0, float("nan")])), 2, 1),
        "struct_title": (variant("struct_title", "title",
                                 pa.array([{"a": "cat"}, {"a": "x"}, None])), 2, 0),
        "binary_title": (variant("binary_title", "title",
                                 pa.array([b"cat \xff", b"cat", b"cat"])), 1, 2),
        "int_tags": (variant("int_tags", "usertags", pa.array([[1, 2], [3], []])), 0, 3),
    }
    for name, (path, malformed, candidates) in cases.items():
        meta = _scan(tmp_path / name, path)
        assert (meta["malformed_rows"], meta["candidates"]) == (malformed, candidates), name


def _fail(tmp_path: Path, dump: Path, capsys, *extra: str) -> str:
    capsys.readouterr()
    code = build_dataset.main(["--out", str(tmp_path / "o"), "--metadata", str(dump),
                               "--stages", "search", "--no-progress", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_whole_file_problems_are_one_line_errors_naming_the_file(tmp_path, capsys):
    good = _line(d.row(1, "cat")) * 2000
    files = {
        "truncated.bz2": (bz2.compress(good)[:300], "ends before its end marker"),
        "empty.bz2": (b"", "is empty"),
        "empty.tsv": (b"", "is empty"),
        "blank.tsv": (b"\n\n", "holds no data"),
        "junk.parquet": (b"PAR1" + b"junk" * 10, "not a readable parquet file"),
        "truncated.gz": (gzip.compress(good)[:300], "ends before its end marker"),
        "zipped.bin": (gzip.compress(bytes(range(256)) * 8), "no known metadata format"),
    }
    for name, (content, expected) in files.items():
        (tmp_path / name).write_bytes(content)
        err = _fail(tmp_path, tmp_path / name, capsys)
        assert str(tmp_path / name) in err and expected in err, err
    (tmp_path / "none").mkdir()
    assert "holds no file" in _fail(tmp_path, tmp_path / "none", capsys)


def test_formats_are_a_registry_told_apart_by_content(tmp_path, capsys):
    assert set(format_names()) >= {"yfcc100m", "parquet"}
    err = _fail(tmp_path, d.write_tsv(d.RULE_ROWS, tmp_path / "a.tsv"), capsys,
                "--metadata-format", "csv")
    assert "unknown" in err and "parquet" in err and "yfcc100m" in err
    err = _fail(tmp_path, tmp_path / "a.tsv", capsys, "--metadata-format", "parquet")
    assert "holds a YFCC100M TSV file" in err and "expected a parquet file" in err
    # a bz2 stream named .tsv and plain text named .bz2 are read by what they hold
    (tmp_path / "b.tsv").write_bytes(bz2.compress((tmp_path / "a.tsv").read_bytes()))
    (tmp_path / "c.bz2").write_bytes((tmp_path / "a.tsv").read_bytes())
    # a gzip stream of TSV lines too, whatever its name, one member or several
    text = (tmp_path / "a.tsv").read_bytes()
    (tmp_path / "d.tsv").write_bytes(gzip.compress(text))
    half = text.index(b"\n", len(text) // 2) + 1
    (tmp_path / "e.gz").write_bytes(gzip.compress(text[:half]) + gzip.compress(text[half:]))
    names = ("a.tsv", "b.tsv", "c.bz2", "d.tsv", "e.gz")
    metas = [_scan(tmp_path / f"o{n}", tmp_path / n) for n in names]
    assert all(m == metas[0] for m in metas) and metas[0]["rows"] == len(d.RULE_ROWS)
    assert MetadataConfig(str(tmp_path / "e.gz")).format == "yfcc100m"
    assert MetadataConfig(str(tmp_path / "b.tsv")).format == "yfcc100m"
    assert get_format("parquet").detect(b"PAR1....") and not get_format("parquet").detect(b"x")


# Peak RSS from /proc (VmHWM, this process's own memory since exec): getrusage's ru_maxrss keeps
# the high-water mark of the process that forked it, i.e. of pytest itself after many tests.
_BOMB = """
import re, sys
from flickr_mammal.build import BuildConfig, build
from flickr_mammal.dump.read import MetadataConfig
config = BuildConfig(out=sys.argv[2], classes=("cat",), per_class=10,
                     min_upload_date=int(sys.argv[3]), max_upload_date=int(sys.argv[4]),
                     stages=("search",), progress=False, metadata=MetadataConfig(sys.argv[1]))
meta = build(config).stats["search"]["metadata"]
peak_kb = re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)
print(meta["rows"], meta["malformed_rows"], peak_kb)
"""


@pytest.mark.parametrize("plain_after", [False, True])
def test_a_bz2_bomb_is_a_skipped_line_in_bounded_memory(tmp_path, plain_after):
    # 160 streams of 1 MB of zeros (a few kB on disk): one 160 MB line with no newline.
    zeros = bz2.compress(b"\0" * (1 << 20))
    first = bz2.compress(_line(d.row(1, "cat")))
    tail = bz2.compress(b"\n" + _line(d.row(2, "cat"))) if plain_after else b""
    dump = tmp_path / "bomb.bz2"
    dump.write_bytes(first + zeros * 80 + (bz2.compress(b"\n") if plain_after else b"")
                     + zeros * 80 + tail)
    assert dump.stat().st_size < 20_000
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_BOMB), str(dump), str(tmp_path / "out"),
         str(d.LO), str(d.HI)], capture_output=True, text=True, timeout=600, cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows, malformed, peak_kb = map(int, proc.stdout.split())
    assert (rows, malformed) == ((2, 2) if plain_after else (1, 1))
    assert peak_kb < 1 << 20  # under 1 GB whatever the input


@pytest.mark.parametrize("parallel", [True, False], ids=["indexed_bzip2", "stdlib"])
def test_bz2_reads_alike_on_every_core_and_on_one(tmp_path, capsys, monkeypatch, parallel):
    """Several streams of several blocks each read as the plain file, whether indexed_bzip2
    decodes them on every core or the standard library on one; cut short, either says so."""
    from flickr_mammal.dump.formats import streams

    if parallel and streams.indexed_bzip2 is None:
        pytest.skip("indexed_bzip2 is not installed")
    if not parallel:
        monkeypatch.setattr(streams, "indexed_bzip2", None)
    rows = [d.row(i, "cat" if i % 7 == 0 else "sunset") for i in range(1, 1201)]
    plain = d.write_tsv(rows, tmp_path / "plain.tsv")
    text = plain.read_bytes()
    cut = text.index(b"\n", len(text) // 3) + 1
    # compresslevel 1: 100 kB blocks, so each stream holds several
    packed = bz2.compress(text[:cut], 1) + bz2.compress(text[cut:], 1)
    (tmp_path / "multi.bz2").write_bytes(packed)
    assert _scan(tmp_path / "o-multi", tmp_path / "multi.bz2") == _scan(tmp_path / "o-plain", plain)
    (tmp_path / "cut.bz2").write_bytes(packed[:len(packed) * 2 // 3])
    err = _fail(tmp_path, tmp_path / "cut.bz2", capsys)
    assert "cut.bz2" in err and "ends before its end marker" in err, err
