"""JSON-lines dumps (flickr_mammal/dump/formats/jsonl.py, readahead.py): detection, bad lines
counted, whole-file problems as one-line errors, blank lines, reading a folder ahead."""

from __future__ import annotations

import gzip
import json

import pytest

from flickr_mammal.dump.errors import DumpFileError
from flickr_mammal.dump.formats import readahead
from flickr_mammal.dump.formats.jsonl import parse_lines
from flickr_mammal.dump.read import MetadataConfig
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal import dump_format_fixtures as f
from tests.flickr_mammal.test_dump_fastpath import scanned, tricky_rows
from tests.flickr_mammal.test_dump_malformed import _fail, _scan


def _line(pid: int, title: object = "cat", **cells: object) -> bytes:
    return (json.dumps({**f.tool_sample(d.row(pid, "x")), "title": title, **cells}) + "\n"
            ).encode()


def test_told_by_content_whatever_the_name(tmp_path):
    text = _line(1) + _line(2, "dog")
    (tmp_path / "a.txt").write_bytes(gzip.compress(text))
    (tmp_path / "b.tsv").write_bytes(b"\n  " + text)
    (tmp_path / "c.jsonl.gz").write_bytes(text)  # plain text named .gz
    for name in ("a.txt", "b.tsv", "c.jsonl.gz"):
        assert MetadataConfig(str(tmp_path / name)).format == "jsonl", name
        assert _scan(tmp_path / f"o{name}", tmp_path / name)["candidates"] == 1
    # inside a gzip stream, text that is no JSON object is a TSV, binary is no known format
    (tmp_path / "t.gz").write_bytes(gzip.compress(b"1\t2\t3\n"))
    assert MetadataConfig(str(tmp_path / "t.gz")).format == "yfcc100m"
    (tmp_path / "b.gz").write_bytes(gzip.compress(b"\0\1\2" * 30))
    with pytest.raises(DumpFileError, match="no known metadata format"):
        MetadataConfig(str(tmp_path / "b.gz"))


def test_bad_lines_are_counted_and_the_scan_goes_on(tmp_path, capsys):
    lines = [_line(1), b'{"photoid": 2, "title": "cat"\n', b"[1, 2]\n", b"17\n",
             _line(3, {"text": "cat"}), _line(4).replace(b'"cat"', b'"cat \xff"'),
             _line(5, ["my", "cat"]), _line(6, 123, usertags="cat"), _line(7)]
    for name in ("bad.jsonl", "bad.jsonl.gz"):
        data = b"".join(lines)
        (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        meta = _scan(tmp_path / f"out-{name}", tmp_path / name)
        assert (meta["rows"], meta["malformed_rows"], meta["candidates"]) == (4, 5, 4), name


def test_blank_lines_keep_rows_and_lines_aligned(tmp_path):
    """pyarrow skips blank and whitespace-only lines: the hit rows are still found."""
    rows = [_line(10 + i, "cat" if i % 3 == 0 else "sunset") for i in range(30)]
    text = b"\n".join(rows[:5]) + b"\n   \n\r\n" + b"".join(rows[5:]) + b"\n\n"
    texts = {"title": "title"}
    parsed = parse_lines(text, texts, {"photo_id": "photoid", "title": "title"})
    assert parsed.num_rows == 30 and parsed.malformed == 0
    got = parsed.rows_at([0, 3, 6, 29])
    assert [r["photo_id"] for r in got] == [10, 13, 16, 39]
    dump = tmp_path / "blank.jsonl"
    dump.write_bytes(text)
    assert _scan(tmp_path / "out", dump)["candidates"] == 10


def test_whole_file_problems_are_one_line_errors(tmp_path, capsys):
    good = b"".join(_line(i) for i in range(3000))
    packed = gzip.compress(good)
    middle = len(packed) // 2
    corrupt = packed[:middle] + bytes(b ^ 0xFF for b in packed[middle:middle + 200]) \
        + packed[middle + 200:]
    files = {
        "truncated.jsonl.gz": (packed[:-2000], "ends before its end marker"),
        "corrupt.jsonl.gz": (corrupt, "not a valid gzip stream"),
        "cut.jsonl": (b'{"photoid": 1,\n' + good, "line 1 is not a JSON object"),
        "blank.jsonl": (b"{}\n", "no column 'photoid'"),
    }
    for name, (content, expected) in files.items():
        (tmp_path / name).write_bytes(content)
        err = _fail(tmp_path, tmp_path / name, capsys)
        assert str(tmp_path / name) in err and expected in err, err
    err = _fail(tmp_path, tmp_path / "cut.jsonl", capsys, "--metadata-format", "sqlite")
    assert "holds a JSON lines file" in err and "expected a SQLite file" in err


def test_a_truncated_file_in_a_folder_names_that_file(tmp_path, capsys):
    folder = f.write_tool_folder(tricky_rows(200), tmp_path / "meta")
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(victim.read_bytes()[:-40])
    err = _fail(tmp_path, folder, capsys)
    assert str(victim) in err and "ends before its end marker" in err


def test_a_folder_skips_what_is_not_json_lines(tmp_path):
    """A Hugging Face image folder: metadata.jsonl beside images and a README."""
    rows = tricky_rows(200)
    folder = tmp_path / "hf"
    folder.mkdir()
    f.write_jsonl(rows, folder / "metadata.jsonl", extra=True)
    (folder / "README.md").write_text("# a dataset card\n")
    (folder / "dataset_info.json").write_text('{"features": {}}\n')
    (folder / "0001.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    want = scanned(tmp_path / "tsv", d.write_tsv(rows, tmp_path / "d.tsv"))
    assert MetadataConfig(str(folder)).files() == [folder / "metadata.jsonl"]
    assert scanned(tmp_path / "out", folder) == want


def test_read_ahead_gives_each_file_in_order_and_streams_the_big_ones(tmp_path):
    texts = [b"".join(_line(100 * k + i) for i in range(50 + k)) for k in range(4)]
    paths = []
    for k, text in enumerate(texts):
        paths.append(tmp_path / f"{k:03x}.gz")
        paths[-1].write_bytes(gzip.compress(text))
    ahead = readahead.ReadAhead(paths, workers=1, limit=len(texts[1]))
    try:
        assert ahead.take(paths[0]) == texts[0]
        assert ahead.take(paths[2]) is None  # past the limit: the caller streams it
        assert ahead.take(tmp_path / "other.gz") is None  # not planned
        assert ahead.take(paths[3]) is None
    finally:
        ahead.close()
    assert ahead.pool is None  # closed after the last planned file
    paths[1].write_bytes(gzip.compress(texts[1])[:-10])
    ahead = readahead.ReadAhead(paths, workers=1)
    try:
        with pytest.raises(DumpFileError, match="001.gz: the gzip stream ends"):
            ahead.take(paths[1])
    finally:
        ahead.close()


def test_a_folder_scans_alike_with_and_without_reading_ahead(tmp_path, monkeypatch):
    rows = tricky_rows()
    folder = f.write_tool_folder(rows, tmp_path / "meta")
    monkeypatch.setattr(readahead.os, "cpu_count", lambda: 1)  # one CPU: streamed
    assert readahead.ReadAhead.for_files(sorted(folder.iterdir())) is None
    streamed = scanned(tmp_path / "streamed", folder, chunk_bytes=1 << 16)
    monkeypatch.setattr(readahead.os, "cpu_count", lambda: 2)
    ahead = readahead.ReadAhead.for_files(sorted(folder.iterdir()))
    assert ahead is not None and ahead.workers == 2  # a thread per CPU: decompression dominates
    monkeypatch.setattr(readahead, "LIMIT_BYTES", 40_000)  # some files too big: streamed
    sizes = [len(gzip.decompress(p.read_bytes())) for p in sorted(folder.iterdir())]
    assert min(sizes) < 40_000 < max(sizes)
    assert scanned(tmp_path / "ahead", folder, chunk_bytes=1 << 16) == streamed
