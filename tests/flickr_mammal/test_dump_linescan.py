"""The whole-chunk line scanner (flickr_mammal/dump/linescan.py, Hyperscan): JSON lines parsed
through it give exactly what the per-line RE2 filter gives, on random lines and on every odd
line shape; without it (not installed, class texts not ASCII) the per-line filter runs."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from flickr_mammal.classes import MammalClass
from flickr_mammal.dump import linescan
from flickr_mammal.dump.formats.jsonl import ODD_LINES, parse_prefiltered
from flickr_mammal.dump.match import ClassMatcher
from tests.flickr_mammal.test_dump_prefilter import MAMMALS, _raw_forms, _sample, _text

needs_hyperscan = pytest.mark.skipif(not linescan.available(), reason="hyperscan not installed")

ODD = [b"\n", b"  \r\n", b"\r\n", b"{\n", b"}\n", b"{}\n", b"{}\r\n", b"{}\r\r\n", b"{} \n",
       b"[1, 2]\n", b"\xef\xbb\xbf" + b'{"title": "fox"}\n', b'{"photoid": 9, "title": cat\n',
       b'{"title": "\\u212aoala"}\n', '{"title": "\u212aoala"}\n'.encode(),
       '{"title": "\u017fheep"}\n'.encode(), b'{"title": "\\u0063at"}\n', b"x\n"]


def _chunk(rng: random.Random, classes: list[MammalClass], count: int) -> bytes:
    lines = []
    for i in range(count):
        if rng.random() < 0.1:
            lines.append(rng.choice(ODD))
        else:
            cells = [_text(rng, classes) for _ in range(3)]
            lines.append((_raw_forms(cells, random.Random(i))["json"] + "\n").encode())
    tail = b"" if rng.random() < 0.5 else b'{"title": "zebra"}'  # a last line with no newline
    return b"".join(lines) + tail


def _same(a, b, rows: bool = True) -> None:
    assert (a.num_rows, a.malformed) == (b.num_rows, b.malformed)
    if not a.texts:
        return
    assert {k: v.cast(pa.binary()).to_pylist() for k, v in a.texts.items()} == \
        {k: v.cast(pa.binary()).to_pylist() for k, v in b.texts.items()}
    if rows:
        indices = list(range(len(next(iter(a.texts.values())))))
        assert a.rows_at(indices) == b.rows_at(indices)


@needs_hyperscan
def test_the_scanner_parses_the_lines_the_per_line_filter_parses():
    rng = random.Random(3)
    matcher = ClassMatcher(MAMMALS, url_encoded=True)
    texts = {"title": "title", "description": "description", "tags": "usertags"}
    fields = {"photo_id": "photoid", **texts}
    raw = matcher.raw_filter()
    assert raw.scanner(ODD_LINES) is not None
    for _ in range(20):
        data = _chunk(rng, MAMMALS, 300)
        for view in (data, memoryview(b"pad" + data)[3:]):  # bytes, and a view into a buffer
            scanned = parse_prefiltered(view, texts, fields, raw)
            _same(scanned, parse_prefiltered(data, texts, fields, matcher.raw_hits))
    hits = parse_prefiltered(b"".join(ODD), texts, fields, raw)
    assert sorted(t for t in hits.texts["title"].to_pylist() if t) == \
        ["cat", "fox", "\u017fheep", "\u212aoala", "\u212aoala"]


@needs_hyperscan
def test_a_chunk_that_is_not_utf8_is_parsed_line_by_line():
    matcher = ClassMatcher(MAMMALS, url_encoded=True)
    data = _sample(1, "cat") + b'{"title": "\xff dog"}\n' + _sample(2, "sunset")
    texts, fields = {"title": "title"}, {"photo_id": "photoid", "title": "title"}
    got = parse_prefiltered(data, texts, fields, matcher.raw_filter())
    _same(got, parse_prefiltered(data, texts, fields, matcher.raw_hits), rows=False)
    assert got.num_rows == 3  # every line parsed (the scan counts the bad one malformed)


def test_no_scanner_for_class_texts_that_are_not_ascii():
    matcher = ClassMatcher([MammalClass("éléphant", 0, search="Éléphant")], url_encoded=True)
    assert matcher.raw_filter().scanner(ODD_LINES) is None  # RE2 folds their case; Hyperscan not
    data = b'{"title": "\\u00c9l\\u00e9phant"}\n{"title": "x"}\n'
    got = parse_prefiltered(data, {"title": "title"}, {"title": "title"}, matcher.raw_filter())
    assert got.texts["title"].to_pylist() == ["Éléphant"] and got.num_rows == 2


def test_without_hyperscan_the_per_line_filter_runs(monkeypatch):
    monkeypatch.setattr(linescan, "hyperscan", None)
    linescan.line_scanner.cache_clear()
    try:
        matcher = ClassMatcher(MAMMALS, url_encoded=True)
        assert matcher.raw_filter().scanner(ODD_LINES) is None
        data = _sample(1, "cat") + _sample(2, "sunset") + b"\n"
        got = parse_prefiltered(data, {"title": "title"}, {"photo_id": "photoid"},
                                matcher.raw_filter())
        assert got.num_rows == 2 and len(got.texts["title"]) == 1
    finally:
        linescan.line_scanner.cache_clear()


@needs_hyperscan
def test_a_pattern_hyperscan_cannot_take_leaves_the_per_line_filter(caplog):
    assert linescan.line_scanner("(unclosed", True) is None  # RE2 would refuse it too; no crash
    assert "scanner is off" in caplog.text
