"""Metadata-dump search speed (rows/s) for TSV (plain, .bz2, .gz), parquet, SQLite and JSON lines
(plain, and a folder of gzip files), against just reading them.

Writes a synthetic dump in the real YFCC100M layout (25 tab-separated columns, URL-encoded
text, about 500 bytes a row like the real file; half the rows geotagged; about 1% of rows name
a mammal class in their title or tags, the rest is ordinary photo text including words that
contain class names, such as "location" or "catalog"). Then, for each format, ``--repeat``
times (the range is printed: on a shared machine single runs mislead):

- bytes (TSV formats): the file's bytes and nothing else (each chunk of the memory map copied
  out, .bz2 decompressed; newlines counted) - the I/O / decompression limit;
- read (parquet): each row group's scan columns decoded - the limit of a parquet scan;
- parse (TSV formats): the scan's own chunker + pyarrow.csv parse of the columns the scan
  parses (id and texts), no filtering - the limit of any scan that parses with pyarrow;
  (SQLite, JSON lines): the format's chunks (text columns read or parsed), no filtering;
- bzip2 -dc / gzip -dc (compressed inputs): the system tool decompressing the same file(s) to
  /dev/null in one process, one core, the reference for "as fast as decompression allows";
  stdlib (.bz2): the standard library's bz2 on one core (the scan where indexed_bzip2 is not
  installed); bytes (.bz2): indexed_bzip2 on every core, as the scan reads it; stream: each file
  decompressed in this thread in turn; bytes: the scan's own decompression (threads reading
  ahead, one per CPU);
- prefilt (SQLite, JSON lines): the format's chunks as the scan reads them, in this thread (the
  raw-text prefilter on every row, or for JSON lines one Hyperscan pass over each chunk, only
  the rows it keeps parsed) and the parsed texts' prefilter: the scan's per-byte work, without
  the per-hit work and commits;
- scan: ``dump_search.search_dump`` into a fresh catalog, all 42 classes (prefilter, exact
  match, filters, staging commits and the final selection), with its default reader threads
  (one per CPU; SQLite: one); "1 reader" (TSV and JSON lines): the same with one reader
  thread, one chunk read at a time beside the commits; "per-line" (JSON lines): the scan
  with the per-line RE2 filter, as where Hyperscan is not installed.

Printed: rows/s (wall; median and min-max of the runs), CPU seconds per million rows (all
threads; steadier than wall time when other jobs share the CPUs), scan/parse and scan/bytes
ratios, the scan's fraction of the 1M rows/s goal, and (with tsv listed first) each scan's CPU
per row as a multiple of the TSV scan's in the same run.

The SQLite file, the JSON lines and the folder (64 files, the yfcc100m tool's layout) are
converted from the same synthetic TSV (benchmarks/_metadata_copies.py).

    python benchmarks/bench_metadata.py [--rows 1000000] [--repeat 3] [--formats tsv,parquet]
    python benchmarks/bench_metadata.py --rows 200000 --formats sqlite,jsonl,jsonl.gz
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import math
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _metadata_copies import to_gz_folder, to_jsonl, to_sqlite, tool_dc_seconds

from flickr_mammal.build import DEFAULT_LICENSES, FLICKR_START
from flickr_mammal.catalog import Catalog
from flickr_mammal.classes import CLASS_NAMES, get_class
from flickr_mammal.dump import linescan
from flickr_mammal.dump.formats import streams
from flickr_mammal.dump.formats.streams import is_compressed
from flickr_mammal.dump.formats.tsv import line_chunks
from flickr_mammal.dump.match import ClassMatcher
from flickr_mammal.dump.read import (
    TEXT_FIELDS,
    YFCC_COLUMNS,
    MetadataConfig,
    parquet_groups,
    parse_tsv,
    resolve_columns,
    tsv_chunks,
    tsv_spans,
)
from flickr_mammal.dump.search import search_dump

WORDS = (
    "the of and in on at my our day trip summer winter spring beach park city street view "
    "sunset sky lake river mountain tree flower garden family friends party wedding birthday "
    "house church bridge tower museum night light old new red blue green canon nikon img dsc "
    "photo travel holiday vacation location education catalog scattered concert festival "
    "market food train station airport snow rain clouds sea harbour boat castle square"
).split()
LICENSES = ("Attribution-NonCommercial-ShareAlike License", "Attribution-NonCommercial License",
            "Attribution License", "Attribution-ShareAlike License",
            "Attribution-NoDerivs License", "Attribution-NonCommercial-NoDerivs License")


def _pool(rng: random.Random, size: int, lo: int, hi: int, sep: str) -> list[str]:
    """``size`` random texts of lo..hi vocabulary words (rows draw from these pools: fast)."""
    return [sep.join(rng.choices(WORDS, k=rng.randint(lo, hi))) for _ in range(size)]


def write_dump(path: Path, rows: int, seed: int = 0, match: float = 0.01) -> None:
    """``rows`` synthetic YFCC100M lines to ``path`` (written in blocks, never whole)."""
    rng, text_rng = np.random.default_rng(seed), random.Random(seed)
    titles = _pool(text_rng, 20_000, 1, 5, "+")
    descs = _pool(text_rng, 20_000, 0, 40, "+")
    tags = _pool(text_rng, 20_000, 0, 12, ",")  # tags: one or two words each
    tags = [",".join(t if text_rng.random() < 0.7 else f"{t}+{text_rng.choice(WORDS)}"
                     for t in group.split(",") if t) for group in tags]
    names = [c.replace(" ", "+") for c in CLASS_NAMES]
    block = 100_000
    with open(path, "w", encoding="utf-8") as out:
        for start in range(0, rows, block):
            n = min(rows, start + block) - start
            r = {k: rng.integers(0, 2**31, n) for k in ("t", "d", "g", "o", "s", "l", "u")}
            geo, hit, desc = rng.random(n) < 0.48, rng.random(n) < match, rng.random(n) < 0.6
            video = rng.random(n) < 0.008
            lon, lat = rng.uniform(-180, 180, n), rng.uniform(-80, 80, n)
            lines = []
            for j in range(n):
                i, pid = start + j, 2_000_000_000 + (start + j) * 7
                title = titles[r["t"][j] % len(titles)]
                if hit[j]:
                    title += "+" + names[r["t"][j] % len(names)]
                server, secret = str(1000 + r["s"][j] % 9000), f"{r['s'][j]:010x}"
                owner = f"{10**7 + r['o'][j] % 9 * 10**7}@N0{r['o'][j] % 10}"
                lines.append("\t".join((
                    str(i), str(pid), f"{r['u'][j]:032x}", owner, "user+name",
                    "2012-02-16 09:56:37.0", str(1_100_000_000 + r["u"][j] % 300_000_000),
                    "Canon+PowerShot+ELPH+310+HS", title,
                    descs[r["d"][j] % len(descs)] if desc[j] else "",
                    tags[r["g"][j] % len(tags)], "", f"{lon[j]:.6f}" if geo[j] else "",
                    f"{lat[j]:.6f}" if geo[j] else "", "16" if geo[j] else "",
                    f"http://www.flickr.com/photos/{owner}/{pid}/",
                    f"http://farm8.staticflickr.com/{server}/{pid}_{secret}.jpg",
                    LICENSES[r["l"][j] % len(LICENSES)],
                    "http://creativecommons.org/licenses/by-nc/2.0/", server, "8", secret,
                    f"{r['l'][j]:010x}", "jpg", "1" if video[j] else "0",
                )))
            out.write("\n".join(lines) + "\n")


def to_parquet(tsv: Path, path: Path) -> None:
    fields = resolve_columns(MetadataConfig(str(tsv)).mapping, YFCC_COLUMNS, str(tsv))
    writer = None
    for _, data in tsv_chunks(tsv, 64 << 20):
        table, _ = parse_tsv(data, YFCC_COLUMNS, sorted(set(fields.values())))
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table, row_group_size=500_000)
    writer.close()


def bare_read(config: MetadataConfig) -> int:
    """Lines, counted in bytes read (plain TSV: each chunk of the memory map copied out) or
    decompressed (.bz2): the I/O / decompression limit. Parquet has no such pass (its
    read decodes columns)."""
    path = Path(config.path)
    spans = tsv_chunks if is_compressed(path) else tsv_spans
    return sum(bytes(data).count(b"\n") for _, data in spans(path, config.chunk_bytes))


def stdlib_bz2(config: MetadataConfig) -> int:
    """Lines of the .bz2 decompressed by the standard library's bz2 (one core), as the scan
    reads it where indexed_bzip2 is not installed."""
    saved = streams.indexed_bzip2
    streams.indexed_bzip2 = None
    try:
        return bare_read(config)
    finally:
        streams.indexed_bzip2 = saved


def read_only(config: MetadataConfig) -> int:
    """Rows read with the scan's own reader and columns, no filtering."""
    path = Path(config.path)
    if config.format == "parquet":
        columns = sorted(set(resolve_columns(config.mapping, pq.ParquetFile(path).schema_arrow
                                             .names, "").values()))
        return sum(t.num_rows for _, t in parquet_groups(path, columns, set()))
    fields = resolve_columns(config.mapping, YFCC_COLUMNS, "")
    columns = sorted({fields[f] for f in ("photo_id", *TEXT_FIELDS)})  # what the scan parses
    spans = tsv_chunks if is_compressed(path) else tsv_spans
    return sum(parse_tsv(data, YFCC_COLUMNS, columns)[0].num_rows
               for _, data in spans(path, config.chunk_bytes))


def format_read(config: MetadataConfig) -> int:
    """Rows of the format's own chunks (SQLite, JSON lines), no filtering."""
    fmt, rows = config.reader, 0
    for path in config.files():
        layout, available = fmt.layout(path)
        fields = resolve_columns(config.mapping, available, str(path))
        for chunk in fmt.chunks(path, layout, fields, TEXT_FIELDS, config.chunk_bytes, []):
            rows += chunk.num_rows
    return rows


def format_prefilter(config: MetadataConfig) -> int:
    """Rows of the format's chunks as the scan reads them (the raw-text prefilter run, only
    the rows it keeps parsed) and the parsed texts' prefilter: the scan's per-byte work."""
    fmt, rows = config.reader, 0
    matcher = ClassMatcher([get_class(c) for c in CLASS_NAMES], url_encoded=fmt.url_encoded)
    for path in config.files():
        layout, available = fmt.layout(path)
        fields = resolve_columns(config.mapping, available, str(path))
        for chunk in fmt.chunks(path, layout, fields, TEXT_FIELDS, config.chunk_bytes, [],
                                raw_filter=matcher.raw_filter()):
            matcher.prefilter_hits(list(chunk.texts.values()))
            rows += chunk.num_rows
    return rows


def format_bytes(config: MetadataConfig) -> int:
    """Lines of the JSON-lines reader's decompressed (or memory-mapped) bytes, not parsed."""
    fmt = config.reader
    return sum(bytes(data).count(b"\n") for path in config.files()
               for _, data in fmt.spans(path, config.chunk_bytes, 0))


def format_stream(config: MetadataConfig) -> int:
    """Lines of each gzip file decompressed in this process, one after the other (no reading
    ahead): what the read-ahead threads are measured against."""
    return sum(bytes(data).count(b"\n") for path in config.files()
               for _, data in line_chunks(gzip.open(path, "rb"), True, config.chunk_bytes, 0))


def scan(config: MetadataConfig) -> int:
    with tempfile.TemporaryDirectory() as tmp, Catalog.open(Path(tmp) / "c.sqlite") as cat:
        summary = search_dump(config, cat, classes=CLASS_NAMES, licenses=DEFAULT_LICENSES,
                              window=(FLICKR_START, 1_800_000_000), per_class=40_000)
    return summary["rows"]


def scan_one_reader(config: MetadataConfig) -> int:
    """The scan with one reader thread (one chunk read at a time, beside the commits)."""
    return scan(replace(config, readers=1))


def scan_per_line(config: MetadataConfig) -> int:
    """The scan with the per-line RE2 filter only (no Hyperscan pass over whole chunks)."""
    saved = linescan.hyperscan
    linescan.hyperscan = None
    linescan.line_scanner.cache_clear()
    try:
        return scan(config)
    finally:
        linescan.hyperscan = saved
        linescan.line_scanner.cache_clear()


def timed(job: Callable[[MetadataConfig], int], config: MetadataConfig, rows: int,
          repeat: int) -> tuple[list[float], float]:
    """Rows/s of each run and the median CPU seconds per million rows."""
    speeds, cpu = [], []
    for _ in range(repeat):
        wall, start = time.perf_counter(), time.process_time()
        got = job(config)
        speeds.append(rows / (time.perf_counter() - wall))
        cpu.append((time.process_time() - start) / rows * 1e6)
        assert got == rows, (job.__name__, got, rows)
    return speeds, statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--formats", default="tsv,parquet,tsv.bz2,tsv.gz,sqlite,jsonl,jsonl.gz",
                        help="comma-separated: tsv, parquet, tsv.bz2, tsv.gz, sqlite, jsonl, "
                        "jsonl.gz (a folder of gzip files)")
    parser.add_argument("--dir", default=".bench/metadata")
    args = parser.parse_args()
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    tsv = folder / f"yfcc_{args.rows}.tsv"
    if not tsv.exists():
        start = time.perf_counter()
        write_dump(tsv.with_suffix(".tmp"), args.rows)
        tsv.with_suffix(".tmp").rename(tsv)
        print(f"wrote {tsv} ({tsv.stat().st_size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - start:.0f}s")
    files = {"tsv": tsv, "tsv.bz2": tsv.with_name(tsv.name + ".bz2"),
             "tsv.gz": tsv.with_name(tsv.name + ".gz"),
             "parquet": tsv.with_suffix(".parquet"), "sqlite": tsv.with_suffix(".sql"),
             "jsonl": tsv.with_suffix(".jsonl"), "jsonl.gz": tsv.with_suffix(".gzfolder")}
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if "tsv.bz2" in formats and not files["tsv.bz2"].exists():
        with open(tsv, "rb") as src, bz2.open(files["tsv.bz2"], "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    if "tsv.gz" in formats and not files["tsv.gz"].exists():
        with open(tsv, "rb") as src, gzip.open(files["tsv.gz"], "wb", 6) as dst:
            shutil.copyfileobj(src, dst, 1 << 24)
    if "parquet" in formats and not files["parquet"].exists():
        to_parquet(tsv, files["parquet"])
    if "sqlite" in formats and not files["sqlite"].exists():
        to_sqlite(tsv, files["sqlite"])
    if {"jsonl", "jsonl.gz"} & set(formats) and not files["jsonl"].exists():
        to_jsonl(tsv, files["jsonl"])
    if "jsonl.gz" in formats and not files["jsonl.gz"].exists():
        to_gz_folder(files["jsonl"], files["jsonl.gz"])
    print(f"{args.rows:,} rows, {args.repeat} runs each; pyarrow {pa.__version__}, "
          f"{pa.cpu_count()} arrow threads, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f} (above ~0.5: other jobs share the CPUs)")
    print(f"{'format':8} {'MB':>5} {'stage':8} {'rows/s median':>13} {'(min-max)':>19} "
          f"{'CPU s/M':>7}  vs")
    scan_cpu: dict[str, float] = {}
    for name in formats:
        path = files[name]
        config = MetadataConfig(str(path))
        jobs = {"parquet": [("read", read_only), ("scan", scan)],
                "sqlite": [("read", format_read), ("prefilt", format_prefilter),
                           ("scan", scan)],
                "jsonl": [("bytes", format_bytes), ("parse", format_read),
                          ("prefilt", format_prefilter), ("1 reader", scan_one_reader),
                          ("per-line", scan_per_line), ("scan", scan)],
                "tsv.bz2": [("bzip2 -dc", "bzip2"), ("stdlib", stdlib_bz2), ("bytes", bare_read),
                            ("parse", read_only), ("1 reader", scan_one_reader), ("scan", scan)],
                "tsv.gz": [("gzip -dc", "gzip"), ("bytes", bare_read), ("parse", read_only),
                           ("scan", scan)],
                "jsonl.gz": [("gzip -dc", "gzip"), ("stream", format_stream),
                             ("bytes", format_bytes),
                             ("parse", format_read), ("prefilt", format_prefilter),
                             ("1 reader", scan_one_reader), ("scan", scan)],
                }.get(name, [("bytes", bare_read), ("parse", read_only),
                             ("1 reader", scan_one_reader), ("scan", scan)])
        size = sum(p.stat().st_size for p in (path.iterdir() if path.is_dir() else [path]))
        medians = {}
        for stage, job in jobs:
            if isinstance(job, str):  # TOOL -dc: wall time of the reference tool, no CPU
                speeds = [args.rows / tool_dc_seconds(job, path) for _ in range(args.repeat)]
                cpu = math.nan
            else:
                speeds, cpu = timed(job, config, args.rows, args.repeat)
            medians[stage] = statistics.median(speeds)
            note = ""
            if stage == "scan":
                note = ", ".join(f"{medians['scan'] / v:.2f} of {k}"
                                 for k, v in medians.items() if k != "scan")
                note += f", {medians['scan'] / 1e6:.2f} of the 1M rows/s goal"
                scan_cpu[name] = cpu
                if name != "tsv" and "tsv" in scan_cpu:
                    note += f"; CPU {cpu / scan_cpu['tsv']:.2f}x the tsv scan's"
            print(f"{name:8} {size / 1e6:5.0f} {stage:8} {medians[stage]:13,.0f} "
                  f"({min(speeds):8,.0f}-{max(speeds):8,.0f}) {cpu:7.2f}  {note}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
