"""The vectorised dump scan (mmap chunks, joined-text RE2 prefilter, rows found again by id)
gives exactly what a plain row-by-row Python scan gives: same counts, same candidates, same
ambiguous photos, same per-class choice, also after a crash and resume."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flickr_mammal.build import BuildConfig, build
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import CLASS_NAMES, get_class
from flickr_mammal.dump import search as dump_search
from flickr_mammal.dump.match import ClassMatcher
from flickr_mammal.dump.read import FIELDS, YFCC_COLUMNS, MetadataConfig
from flickr_mammal.dump.rows import DROP_REASONS, RowFilters, drop_reason, rank_key
from tests.flickr_mammal import dump_fixtures as d

PER_CLASS = 7
LICENSES = (1, 2, 4, 5, 6)  # 3 (NoDerivs) and 0 (all rights reserved) are not allowed
LICENSE_NAMES = (d.CC_BY, "All Rights Reserved", "Attribution-NonCommercial-NoDerivs License",
                 "Attribution-ShareAlike License", "Attribution-NonCommercial License")
NAMES = [c.replace(" ", "+") for c in CLASS_NAMES]
NOISE = ("location", "catalog", "education", "lions", "bobcat", "dogma", "seal", "pigment",
         "fox_glove", "sunset", "beach", "tree", "sea", "polar", "brown", "red")
TRICKY = [  # (title, description, tags): one row each, hand-picked edge cases
    ("A+Sea+Lion", "", ""), ("sunset", "", "beach,sealion"), ("Lions+at+dusk", "", ""),
    ("location", "catalog+education", "bobcat"), ("IMG_1", "My+dog%2C+Rex", ""),
    ("Cat", "", "dog"), ("lion", "", "sea+lion"), ("polar%20BEAR", "", ""),
    ("red", "panda+in+a+tree", ""),          # phrase split across columns: no red panda
    ("out+at+sea", "lions+resting", ""),     # ... and no sea lion ("lions" is not lion)
    ("", "", "giant+panda,zoo"), ("", "", "Brown%2BBear"), ("Caf%C3%A9cat", "", ""),
    ("café+cat", "", ""), ("%C3%A9cat", "", ""), ("DOG!", "", ""), ("x", "HORSE", "y"),
    ("sea%2C+lion", "", ""), ("sea+lions", "", ""), ("tiger_shark", "", ""),
    ("tiger-shark", "", ""),
]


def _text(rng: random.Random) -> tuple[str, str, str]:
    words = lambda k: [rng.choice(NOISE) for _ in range(k)]  # noqa: E731
    title, desc, tags = words(rng.randint(0, 3)), words(rng.randint(0, 6)), words(rng.randint(0, 3))
    for _ in range(rng.choice((0, 0, 1, 1, 1, 2))):  # 0, 1 or 2 class names, anywhere
        rng.choice((title, desc, tags)).insert(rng.randint(0, 3), rng.choice(NAMES[:8]))
    case = rng.choice((str.lower, str.upper, str.title))
    return case("+".join(title)), "+".join(desc), ",".join(tags)


def tricky_rows(n: int = 900, seed: int = 3, bad_id: bool = True) -> list[dict]:
    rng = random.Random(seed)
    ids = rng.sample(range(10**8, 2 * 10**8), n)  # unique, in no order
    rows = []
    for i in range(n):
        title, desc, tags = TRICKY[i] if i < len(TRICKY) else _text(rng)
        geo = rng.random() > 0.15
        lat = rng.choice((48.5, -91.0, 12.25)) if geo else None  # -91: kept, bad_geo
        rows.append(d.row(
            ids[i], title, description=desc, tags=tags,
            lat=lat, lon=2.5 if geo else None, marker=int(rng.random() < 0.03),
            license=rng.choice(LICENSE_NAMES),
            uploaded=rng.choice((d.LO + 5, d.HI, d.HI + 1, d.LO - 1, d.LO + 10**6))))
    if bad_id:
        rows[40].update(photoid="12ab", title="cat")  # names a class: counted as bad_id
    return rows


def write_tsv_with_junk(rows: list[dict], path: Path) -> Path:
    """TSV with a malformed line (too few columns) and an empty line among the rows."""
    lines = ["\t".join(r[c] for c in YFCC_COLUMNS) for r in rows]
    lines.insert(300, "broken\tcat\tline")
    lines.insert(500, "")
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(d.bz2.compress(text) if path.suffix == ".bz2" else text)
    return path


def reference(rows: list[dict | None], url_encoded: bool) -> dict:
    """Row by row in Python, no prefilter: the rules as the module docstrings state them."""
    matcher = ClassMatcher([get_class(c) for c in CLASS_NAMES], url_encoded=url_encoded)
    filters = RowFilters(frozenset(LICENSES), d.LO, d.HI)
    counts: Counter[str] = Counter()
    named: dict[str, tuple[str, ...]] = {}
    for row in rows:
        if row is None:
            counts["malformed"] += 1
            continue
        counts["rows"] += 1
        names = matcher.match(row["title"], row["description"], row["tags"])
        if not names:
            continue
        counts["matched"] += 1
        reason = drop_reason(row, filters)
        if reason:
            counts[f"dropped_{reason}"] += 1
            continue
        counts["candidates"] += 1
        named[str(row["photo_id"])] = names
    ambiguous = {p for p, names in named.items() if len(names) > 1}
    chosen = {}
    for name in CLASS_NAMES:
        ids = sorted((p for p, names in named.items() if names == (name,)),
                     key=lambda p: (rank_key(p, 0), p))
        chosen.update((p, name) for p in ids[:PER_CLASS])
    return {"rows": counts["rows"], "matched": counts["matched"],
            "candidates": counts["candidates"], "malformed_rows": counts["malformed"],
            "dropped": {r: counts[f"dropped_{r}"] for r in DROP_REASONS},
            "ambiguous": ambiguous, "chosen": chosen}


def tsv_reference_rows(path: Path) -> list[dict | None]:
    text = (d.bz2.decompress(path.read_bytes()) if path.suffix == ".bz2"
            else path.read_bytes()).decode()
    out = []
    for line in text.split("\n"):
        if not line:
            continue  # an empty line is no row (as pyarrow.csv reads it)
        parts = line.split("\t")
        out.append(None if len(parts) != len(YFCC_COLUMNS) else
                   {f: parts[YFCC_COLUMNS.index(c)] for f, c in FIELDS.items()})
    return out


def scanned(out: Path, dump: Path, **meta) -> dict:
    config = BuildConfig(out=out, classes=CLASS_NAMES, per_class=PER_CLASS, licenses=LICENSES,
                         min_upload_date=d.LO, max_upload_date=d.HI, stages=("search",),
                         progress=False, metadata=MetadataConfig(str(dump), **meta))
    meta_stats = build(config).stats["search"]["metadata"]
    with Catalog.open(out / "catalog.sqlite") as cat:
        records = list(cat.records())
    return {**{k: meta_stats[k] for k in ("rows", "matched", "candidates", "malformed_rows",
                                          "dropped")},
            "ambiguous": {r.photo_id for r in records if str(r.status) == "ambiguous"},
            "chosen": {r.photo_id: r.class_name for r in records
                       if str(r.status) != "ambiguous"}}


@pytest.mark.parametrize("suffix", [".tsv", ".bz2"])
def test_tsv_fast_scan_equals_the_row_by_row_reference(tmp_path, suffix):
    dump = write_tsv_with_junk(tricky_rows(), tmp_path / f"dump{suffix}")
    want = reference(tsv_reference_rows(dump), url_encoded=True)
    assert want["malformed_rows"] == 1 and want["dropped"]["bad_id"] == 1
    assert all(want["dropped"][r] > 5 for r in DROP_REASONS if r != "bad_id")
    assert len(want["ambiguous"]) > 20 and len(want["chosen"]) > 30
    for readers in (0, 1, 3):  # several 64 KiB chunks, in this thread or read ahead in others
        got = scanned(tmp_path / f"out{readers}", dump, chunk_bytes=1 << 16, readers=readers)
        assert got == want


def test_tricky_rows_are_judged_as_the_rules_say(tmp_path):
    dump = write_tsv_with_junk(tricky_rows(), tmp_path / "dump.tsv")
    matcher = ClassMatcher([get_class(c) for c in CLASS_NAMES], url_encoded=True)
    rows = tsv_reference_rows(dump)[:len(TRICKY)]
    got = [matcher.match(r["title"], r["description"], r["tags"]) for r in rows]
    assert got == [
        ("sea lion",), ("sea lion",), (), (), ("dog",), ("cat", "dog"), ("lion", "sea lion"),
        ("polar bear",), (), (), ("giant panda",), ("brown bear",), (), ("cat",), (), ("dog",),
        ("horse",), ("sea lion",), (), ("tiger",), ("tiger",)]


def test_parquet_fast_scan_equals_the_row_by_row_reference(tmp_path):
    rows = tricky_rows(bad_id=False)  # parquet ids are integers
    dump = d.write_parquet(rows, tmp_path / "dump.parquet", row_group_size=128)
    table = pq.read_table(dump).to_pylist()
    mapped = [{f: r.get(c) for f, c in FIELDS.items()} for r in table]
    want = reference(mapped, url_encoded=False)
    assert scanned(tmp_path / "out", dump) == want


def test_killed_scan_resumes_to_the_reference(tmp_path, monkeypatch):
    dump = write_tsv_with_junk(tricky_rows(), tmp_path / "dump.tsv")
    want = reference(tsv_reference_rows(dump), url_encoded=True)
    real, calls = dump_search.stage_rows, []

    def dying(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a Ctrl-C or kill between two chunk commits
        return real(*args, **kwargs)

    monkeypatch.setattr(dump_search, "stage_rows", dying)
    with pytest.raises(KeyboardInterrupt):
        scanned(tmp_path / "out", dump, chunk_bytes=1 << 16)
    monkeypatch.setattr(dump_search, "stage_rows", real)
    assert scanned(tmp_path / "out", dump, chunk_bytes=1 << 16) == want


def test_memory_mapped_chunks_are_the_streamed_chunks(tmp_path):
    """A scan started with one reader resumes with the other: same boundaries, same bytes."""
    from flickr_mammal.dump.read import tsv_chunks, tsv_spans

    lines = [b"x" * n + b"\n" for n in (10, 70_000, 5, 40_000, 30_000, 3, 65_535)] + [b"tail"]
    path = tmp_path / "f.tsv"
    path.write_bytes(b"".join(lines))
    streamed = list(tsv_chunks(path, 1 << 16))
    mapped = [(offset, bytes(view)) for offset, view in tsv_spans(path, 1 << 16)]
    assert mapped == streamed and len(mapped) == 6
    for offset, _ in streamed:
        assert [(o, bytes(v)) for o, v in tsv_spans(path, 1 << 16, offset)] == \
            list(tsv_chunks(path, 1 << 16, offset))
    (tmp_path / "empty.tsv").write_bytes(b"")
    assert list(tsv_spans(tmp_path / "empty.tsv", 1 << 16)) == []


@pytest.mark.parametrize("suffix", [".tsv", ".parquet"])
def test_a_chunk_without_any_class_text_is_counted_not_a_crash(tmp_path, suffix):
    rows = [d.row(900 + i, "sunset+over+the+lake") for i in range(300)]
    rows[-1] = d.row(1199, "my+cat")  # hits in the last chunk only
    dump = d.write_dump(rows, tmp_path / f"dump{suffix}") if suffix == ".tsv" else \
        d.write_parquet(rows, tmp_path / f"dump{suffix}", row_group_size=100)
    got = scanned(tmp_path / "out", dump, chunk_bytes=1 << 16)
    assert (got["rows"], got["matched"], got["candidates"]) == (300, 1, 1)
    assert got["chosen"] == {"1199": "cat"}


def test_reader_count_is_checked(tmp_path):
    dump = d.write_tsv(d.RULE_ROWS, tmp_path / "dump.tsv")
    with pytest.raises(ValueError, match=r"readers=-1: give 0 \(no reader thread\) or more"):
        MetadataConfig(str(dump), readers=-1)


def test_default_readers_are_one_per_cpu_up_to_a_few(monkeypatch):
    for cpus, want in ((1, 0), (2, 2), (64, dump_search.MAX_DEFAULT_READERS), (None, 0)):
        monkeypatch.setattr(dump_search.os, "cpu_count", lambda c=cpus: c)
        assert dump_search.default_readers() == want
