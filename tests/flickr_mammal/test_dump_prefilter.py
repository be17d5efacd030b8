"""The raw-text prefilter (ClassMatcher.raw_hits, flickr_mammal/dump/formats/lines.py): a strict
superset of the parsed texts' prefilter on every raw form (JSON lines, SQLite rows joined, TSV
lines), so skipping the lines it drops changes no match; JSON lines and SQLite use it."""

from __future__ import annotations

import json
import random
import sqlite3
from urllib.parse import quote, quote_plus

import numpy as np
import pyarrow as pa
import pytest

from flickr_mammal.classes import CLASS_NAMES, MammalClass, get_class
from flickr_mammal.dump.formats.jsonl import parse_lines, parse_prefiltered
from flickr_mammal.dump.formats.lines import split_lines
from flickr_mammal.dump.match import ClassMatcher
from tests.flickr_mammal import dump_fixtures as d
from tests.flickr_mammal import dump_format_fixtures as f
from tests.flickr_mammal.test_dump_fastpath import scanned, tricky_rows

MAMMALS = [get_class(c) for c in CLASS_NAMES]
NOISE = ["location", "catalog", "lions", "bobcat", "sea", "red", "polar", "giant", "x1",
         "café", "ünïcode", "日本", "tab\there", "new\nline", 'say "hi"', "back\\slash", "a/b",
         "\u00a0", "\u2028", "emoji\U0001f600"]
SEPARATORS = [" ", "  ", "-", "_", ",", ".", "!", "\t", "\n", '"', "\\", "\u00a0", "é", "%"]


def _phrase(rng: random.Random, words: list[str]) -> str:
    out = rng.choice(SEPARATORS).join(words) if rng.random() < 0.8 else "".join(words)
    return "".join(c.upper() if rng.random() < 0.3 else c for c in out)


def _text(rng: random.Random, classes: list[MammalClass]) -> str:
    parts = [rng.choice(NOISE) for _ in range(rng.randint(0, 4))]
    for _ in range(rng.choice((0, 0, 0, 0, 0, 1, 2))):
        text = rng.choice([t for c in classes for t in c.texts])
        parts.insert(rng.randint(0, len(parts)), _phrase(rng, text.split()))
    joined = "".join(p + rng.choice(SEPARATORS) for p in parts)
    encode = rng.choice((quote_plus, quote, lambda s: s))  # URL-encoded as YFCC100M, or not
    return encode(joined)


def _raw_forms(cells: list[str], rng: random.Random) -> dict[str, str]:
    """The three cells as raw text: a JSON line (escaped ASCII or not, other keys around), a
    SQLite row's cells joined, a TSV line (tabs and newlines cannot be in its cells)."""
    line = json.dumps({"photoid": 1, "title": cells[0], "description": cells[1],
                       "usertags": cells[2], "url": "http://x/y.jpg"},
                      ensure_ascii=rng.random() < 0.5)
    tsv = "\t".join(["1", *(c.replace("\t", " ").replace("\n", " ") for c in cells), "x"])
    return {"json": line, "sqlite": "\x1e".join(cells), "tsv": tsv}


def _kept_by_columns(matcher: ClassMatcher, rows: list[list[str]]) -> set[int]:
    columns = [pa.array([r[k] for r in rows], pa.string()) for k in range(3)]
    return set(np.flatnonzero(np.logical_or.reduce(matcher.prefilter(columns))).tolist())


def test_raw_prefilter_keeps_every_row_the_parsed_prefilter_keeps():
    rng = random.Random(7)
    for classes in (MAMMALS, [MammalClass("éléphant", 0, search="Éléphant"),
                              MammalClass("koala", 1, synonyms=("ours koala",))]):
        matcher = ClassMatcher(classes, url_encoded=True)
        rows = [[_text(rng, classes) for _ in range(3)] for _ in range(3000)]
        want = _kept_by_columns(matcher, rows)
        assert 500 < len(want) < 2500  # both kinds of rows are well represented
        for form in ("json", "sqlite", "tsv"):
            raw = pa.array([_raw_forms(r, random.Random(i))[form] for i, r in enumerate(rows)])
            got = set(matcher.raw_hits(raw).tolist())
            assert want <= got, (form, [rows[i] for i in sorted(want - got)][:3])
            assert len(got - want) < len(rows) // 5, form  # and it still filters


def test_json_escapes_that_spell_a_class_text_are_kept():
    matcher = ClassMatcher(MAMMALS, url_encoded=True)
    lines = [r'{"title": "\u0063at"}', r'{"title": "\u212aoala"}', r'{"title": "my\ncat"}',
             r'{"title": "sea\u00a0lion"}', r'{"title": "\"dog\""}', r'{"title": "x\tfox"}',
             r'{"title": "location"}', r'{"title": "\u00e9t\u00e9"}', r'{"title": "ncat"}']
    assert matcher.raw_hits(pa.array(lines)).tolist() == [0, 1, 2, 3, 4, 5]
    decoded = [json.loads(line)["title"] for line in lines]  # the parsed texts agree
    assert _kept_by_columns(matcher, [[t, "", ""] for t in decoded]) == {0, 1, 2, 3, 4, 5}


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_count_lines_counts_what_split_lines_splits_across_blocks(monkeypatch, block):
    from flickr_mammal.dump.formats import lines as lines_mod

    monkeypatch.setattr(lines_mod, "_COUNT_BLOCK", block)
    rng = random.Random(block)
    for _ in range(50):
        data = bytes(rng.choice(b"ab\n") for _ in range(rng.randrange(0, 40)))
        for view in (data, memoryview(data)):
            assert lines_mod.count_lines(view) == len(split_lines(view))


def test_split_lines_is_a_view_of_every_line():
    data = b'{"a": 1}\n\n  \r\n{"b": 2}'
    lines = split_lines(memoryview(data))
    assert lines.to_pylist() == [b'{"a": 1}\n', b"\n", b"  \r\n", b'{"b": 2}']
    assert split_lines(b"").to_pylist() == [] and split_lines(b"x\n").to_pylist() == [b"x\n"]


def _sample(pid: int, title: object) -> bytes:
    return (json.dumps({**f.tool_sample(d.row(pid, "x")), "title": title}) + "\n").encode()


def test_json_lines_parse_only_what_may_name_a_class():
    matcher = ClassMatcher(MAMMALS, url_encoded=True)
    texts = {"title": "title"}
    fields = {"photo_id": "photoid", "title": "title"}
    lines = [_sample(i, "cat" if i % 10 == 0 else "sunset") for i in range(100)]
    bad = [b'{"photoid": 1000, "title": "cat"\n', b"[1, 2]\n", b"\n", b"  \n",
           _sample(1001, {"text": "dog"}), b'\xef\xbb\xbf' + _sample(1002, "fox"),
           _sample(1003, "zebra").replace(b"\n", b"\r\n")]
    data = b"".join(lines[:50] + bad + lines[50:])
    full = parse_lines(data, texts, fields)
    calls: list[int] = []

    def counting(values):
        calls.append(len(values))
        return matcher.raw_hits(values)

    part = parse_prefiltered(data, texts, fields, counting)
    assert calls == [107]  # every line seen raw once
    assert (part.num_rows, part.malformed) == (full.num_rows, full.malformed) == (102, 3)
    # only the 10 cat lines and the 7 odd ones were parsed (the blank ones are no rows)
    assert len(part.texts["title"]) == 10 + 2
    hits = matcher.prefilter_hits(list(part.texts.values())).tolist()
    ids = sorted(r["photo_id"] for r in part.rows_at(hits))
    assert ids == [*range(0, 100, 10), 1002, 1003]


def test_a_line_that_names_no_class_is_counted_unparsed():
    """A ``{...}`` line without any class text is not parsed: counted as a row even if it is
    not valid JSON (a line that may name a class is parsed and counted malformed)."""
    matcher = ClassMatcher(MAMMALS, url_encoded=True)
    data = b'{"photoid": 1, "title": sunset}\n{"photoid": 2, "title": cat}\n'
    part = parse_prefiltered(data, {"title": "title"}, {"photo_id": "photoid"},
                             matcher.raw_hits)
    assert (part.num_rows, part.malformed) == (1, 1)


def test_sqlite_with_deleted_rows_matches_the_tsv(tmp_path):
    """Rowids with gaps (deleted rows): each prefiltered row is read back by its own rowid."""
    rows = tricky_rows(bad_id=False)
    dump = f.write_sqlite(rows, tmp_path / "y.sql")
    with sqlite3.connect(dump) as conn:
        conn.execute("DELETE FROM yfcc100m_dataset WHERE rowid % 3 = 0")
    kept = [r for i, r in enumerate(rows, start=1) if i % 3]
    want = scanned(tmp_path / "tsv", d.write_tsv(kept, tmp_path / "d.tsv"), chunk_bytes=1 << 16)
    assert want["candidates"] > 50
    assert scanned(tmp_path / "out", dump, chunk_bytes=1 << 16) == want


def test_sqlite_cell_holding_the_cell_separator_is_read_row_by_row(tmp_path):
    """A kept row whose cell holds U+001E (the separator of the joined texts) cannot be split
    into its cells: its chunk is read again row by row, cells intact."""
    rows = [d.row(1, "cat"), d.row(2, "sunset", description="dog\x1eat+home", tags="zebra"),
            d.row(3, "dog")]
    got = scanned(tmp_path / "out", f.write_sqlite(rows, tmp_path / "y.sql"))
    assert got["chosen"] == {"1": "cat", "3": "dog"} and got["ambiguous"] == {"2"}
    assert (got["rows"], got["malformed_rows"]) == (3, 0)
