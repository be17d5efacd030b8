"""Benchmark: our download stage (flickr_mammal.download) against img2dataset 1.47.0.

Both download the same N distinct real-photo JPEGs (640 px long side) from one local
multi-threaded HTTP server (its own process), shrink them to 300 px on the long side without
borders or enlarging, re-encode as quality-90 JPEG and write them: ours to image files, theirs
to webdataset shards, both into fresh folders on a tmpfs (/dev/shm; --out-root to change).
Each side runs as a fresh subprocess (interpreter start and imports
included for both); runs alternate ours / theirs. Printed: images/s end-to-end and in steady
state (ours: first photo done to last photo done; img2dataset: first shard start to last shard
end, i.e. without its ~5 s of process start-up, which dominates small runs); the client's CPU
per photo in that steady state (its process tree's CPU, sampled from /proc every 50 ms) and
the images/s per core it means, against the decode+resize+encode limit measured in the same
run; CPU seconds of the client and of the server. On a machine shared with other work, wall
times follow the others' load; CPU per photo much less so.

img2dataset is not a project dependency; install it in its own venv:

    python3 -m venv .bench/i2d && .bench/i2d/bin/pip install img2dataset==1.47.0

Usage: python benchmarks/bench_download.py [--images 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from pathlib import Path

from _download_helpers import make_images

ROOT = Path(__file__).resolve().parents[1]
SHM = Path("/dev/shm")
HELPERS = Path(__file__).with_name("_download_helpers.py")

I2D_SCRIPT = """
import json, sys, time
from img2dataset import download
kwargs = json.loads(sys.argv[1])
t0 = time.perf_counter()
download(**kwargs)
print(json.dumps({"inner_s": time.perf_counter() - t0}))
"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=ROOT / ".bench" / "download")
    p.add_argument("--out-root", type=Path, default=SHM if SHM.is_dir() else None,
                   help="where both sides write (default /dev/shm when present, else workdir)")
    p.add_argument("--img2dataset-python", type=Path, default=ROOT / ".bench/i2d/bin/python")
    p.add_argument("--processes", type=int, default=2, help="our worker processes")
    p.add_argument("--workers", type=int, default=16, help="our threads per process")
    p.add_argument("--per-host", type=int, default=16, help="our per-host limit per process")
    p.add_argument("--i2d-processes", type=int, default=2)
    p.add_argument("--i2d-threads", type=int, default=16, help="per process")
    p.add_argument("--server-processes", type=int, default=3,
                   help="local server processes (so the server is not the bottleneck)")
    p.add_argument("--skip-img2dataset", action="store_true")
    p.add_argument("--child-ours", nargs=2, metavar=("URLS", "OUT"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def child_ours(urls_file: Path, out: Path, args: argparse.Namespace) -> int:
    """The measured side of 'ours', run in a fresh interpreter like img2dataset's."""
    from flickr_mammal.download import DownloadConfig, download_records
    from flickr_mammal.layout import Layout
    from flickr_mammal.records import PhotoRecord

    urls = urls_file.read_text().split()
    records = (PhotoRecord(photo_id=f"{i:06d}", owner="bench", class_name="cat", label=0,
                           latitude=0.0, longitude=0.0, url=u) for i, u in enumerate(urls))
    config = DownloadConfig(processes=args.processes, workers=args.workers,
                            per_host=args.per_host, max_retries=0)
    t0 = time.perf_counter()
    counts: Counter[str] = Counter()
    first = first_wall = last = last_wall = None
    for r in download_records(records, Layout.at(out), config):
        last, last_wall = time.perf_counter(), time.time()
        if first is None:
            first, first_wall = last, last_wall
        counts[r.error or "ok"] += 1
    end = time.perf_counter()
    n = sum(counts.values())
    # Steady state: first photo done to last done (worker start-up and shut-down excluded, as
    # img2dataset's shard times exclude its process start-up), scaled to n photos.
    scale = n / max(1, n - 1)
    steady = (last - first) * scale if first else float("nan")
    print(json.dumps({"inner_s": end - t0, "steady_s": steady, "counts": counts,
                      "steady_window": [first_wall, last_wall, scale],
                      "shutdown_s": end - last if last else float("nan")}))
    return 0


def _proc_cpu(pid: int, into: dict[int, float] | None = None) -> float:
    """CPU seconds (user + system) of a running process and its live descendants, from /proc
    (children of every thread: a process pool may be started from any). ``into`` gets each
    process's own CPU by pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except (OSError, IndexError, ValueError):
        return float("nan")
    if into is not None:
        into[pid] = own
    children = []
    for task in tasks:
        try:
            children += (task / "children").read_text().split()
        except OSError:  # a thread that just ended
            pass
    return own + sum(c for c in (_proc_cpu(int(c), into) for c in children) if c == c)


def _sample_cpu(proc: subprocess.Popen, samples: list[tuple[float, float]],
                every_s: float = 0.05) -> None:
    """(wall time, CPU seconds of the client's process tree) until the client ends. A process
    that has ended keeps counting with the last CPU seen, so the series never drops when the
    client's workers exit."""
    last: dict[int, float] = {}
    while proc.poll() is None:
        _proc_cpu(proc.pid, last)
        samples.append((time.time(), sum(last.values())))
        time.sleep(every_s)


def _cpu_between(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """The client's CPU seconds between two wall times (linear between samples)."""
    times = [t for t, _ in samples]
    cpus = [c for _, c in samples]
    if len(samples) < 2 or start < times[0] or end > times[-1]:
        return float("nan")
    import numpy as np

    return float(np.interp(end, times, cpus) - np.interp(start, times, cpus))


def _timed(cmd: list[str], server_pid: int, env: dict[str, str] | None = None) -> dict:
    """Run a client, return its last stdout JSON line plus wall and CPU times (CPU samples of
    its process tree in ``cpu_samples``: the steady state's CPU is read from them)."""
    before_children = os.times()
    server_cpu = _proc_cpu(server_pid)
    samples: list[tuple[float, float]] = []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    sampler = threading.Thread(target=_sample_cpu, args=(proc, samples), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    after_children = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    result["client_cpu_s"] = (after_children.children_user - before_children.children_user
                              + after_children.children_system - before_children.children_system)
    result["server_cpu_s"] = _proc_cpu(server_pid) - server_cpu
    result["cpu_samples"] = samples
    return result


def _runs_root(args: argparse.Namespace) -> Path:
    return (args.out_root or args.workdir) / "bench_download_runs"


def _fresh_output(args: argparse.Namespace, name: str) -> Path:
    """A new, never-used output folder per run; all are deleted after the last run.

    Both sides write to a tmpfs by default: on this VM's ext4 (mounted with ``discard``),
    writing files soon after deleting others costs 0.3-1 ms per file, depending on what was
    deleted how long ago. That noise hits whoever writes many small files (us; img2dataset
    writes a few tar shards) and measures the disk, not the downloader.
    """
    out = _runs_root(args) / f"{name}-{time.time_ns()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def run_ours(args: argparse.Namespace, urls: Path, server_pid: int) -> dict:
    out = _fresh_output(args, "ours")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-ours", str(urls), str(out),
           "--processes", str(args.processes), "--workers", str(args.workers),
           "--per-host", str(args.per_host)]
    result = _timed(cmd, server_pid)
    start, end, scale = result["steady_window"]
    result["steady_cpu_s"] = _cpu_between(result.pop("cpu_samples"), start, end) * scale
    result["ok"] = result["counts"].get("ok", 0)
    files = sorted((out / "images").rglob("*.jpg"))
    result["files"] = len(files)
    result["sizes"] = _long_sides(p.read_bytes() for p in files[:20])
    return result


def run_img2dataset(args: argparse.Namespace, urls: Path, server_pid: int) -> dict:
    out = _fresh_output(args, "img2dataset")
    shards = 2 * args.i2d_processes  # enough shards to keep every process busy
    kwargs = dict(
        url_list=str(urls), input_format="txt", output_folder=str(out),
        output_format="webdataset", image_size=300, resize_mode="keep_ratio_largest",
        resize_only_if_bigger=True, encode_format="jpg", encode_quality=90,
        processes_count=args.i2d_processes, thread_count=args.i2d_threads,
        number_sample_per_shard=-(-args.images // shards), extract_exif=False,
        compute_hash="sha256", timeout=10, retries=0, distributor="multiprocessing",
    )
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}  # no update check over the network
    cmd = [str(args.img2dataset_python), "-c", I2D_SCRIPT, json.dumps(kwargs)]
    result = _timed(cmd, server_pid, env)
    stats = [json.loads(p.read_text()) for p in out.glob("*_stats.json")]
    result["ok"] = sum(s["successes"] for s in stats)
    # Steady state: first shard's start to last shard's end, without process start-up.
    start, end = min(s["start_time"] for s in stats), max(s["end_time"] for s in stats)
    result["steady_s"] = end - start
    result["steady_cpu_s"] = _cpu_between(result.pop("cpu_samples"), start, end)
    result["files"] = result["ok"]
    jpgs = []
    for tar in sorted(out.glob("*.tar"))[:1]:
        with tarfile.open(tar) as tf:
            jpgs = [tf.extractfile(m).read() for m in tf.getmembers() if m.name.endswith(".jpg")]
    result["sizes"] = _long_sides(jpgs[:20])
    return result


def _process_ms(paths: list[Path]) -> float:
    """The decode + resize + encode work per photo (the limit for a core), best of 3."""
    sys.path.insert(0, str(ROOT))
    from flickr_mammal.imaging import process_image, single_threaded_opencv

    single_threaded_opencv()  # as in the download worker processes

    blobs = [p.read_bytes() for p in paths]
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        for b in blobs:
            process_image(b, max_side=300, quality=90)
        best = min(best, (time.process_time() - t0) / len(blobs))
    return best * 1000


def _long_sides(blobs) -> list[int]:
    """Distinct long sides of some outputs: a check that both sides did the same resize."""
    import io

    from PIL import Image

    return sorted({max(Image.open(io.BytesIO(b)).size) for b in blobs})


def _report(name: str, r: dict, n: int, limit: float) -> str:
    # Per core from the CPU the client's processes used in steady state: on a shared machine
    # that is far steadier than wall time divided by a core count.
    per_core = n / r["steady_cpu_s"]
    shutdown = (f"; then {r['shutdown_s']:.2f} s of worker shut-down" if "shutdown_s" in r
                else "")
    return (f"  {name:12s} {n / r['wall_s']:7.1f} img/s end-to-end  wall {r['wall_s']:6.2f} s  "
            f"steady state {n / r['steady_s']:6.1f} img/s ({r['steady_s']:5.2f} s{shutdown})  "
            f"steady-state CPU {1000 * r['steady_cpu_s'] / n:.2f} ms per photo = "
            f"{per_core:5.1f} img/s per core = {per_core / limit:.2f} of the decode limit  "
            f"client CPU {r['client_cpu_s']:5.1f} s in all ({1000 * r['client_cpu_s'] / n:.2f} "
            f"ms per photo, start-up included)  server CPU {r['server_cpu_s']:5.1f} s  "
            f"ok {r['ok']}/{n}  long sides {r['sizes']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_ours:
        return child_ours(Path(args.child_ours[0]), Path(args.child_ours[1]), args)
    if not args.skip_img2dataset and not args.img2dataset_python.exists():
        print(f"img2dataset's Python not found at {args.img2dataset_python}. Install it with:\n"
              f"  python3 -m venv .bench/i2d && .bench/i2d/bin/pip install img2dataset==1.47.0\n"
              f"or pass --img2dataset-python PATH, or --skip-img2dataset.", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    for old in (args.workdir / "out_ours", args.workdir / "out_i2d", _runs_root(args)):
        shutil.rmtree(old, ignore_errors=True)  # left by an interrupted or older run
    t0 = time.perf_counter()
    paths = make_images(args.workdir / f"images-{args.seed}", args.images, args.seed)
    print(f"{len(paths)} distinct JPEGs ready ({time.perf_counter() - t0:.1f} s), "
          f"{sum(p.stat().st_size for p in paths) / len(paths) / 1024:.0f} kB on average")
    limit_ms = _process_ms(paths[:200])
    print(f"decode+resize+encode alone (flickr_mammal.imaging, one thread): {limit_ms:.2f} ms "
          f"per photo = {1000 / limit_ms:.0f} img/s per core")
    args.limit_per_core = 1000 / limit_ms
    server = subprocess.Popen([sys.executable, str(HELPERS), str(paths[0].parent),
                               str(args.server_processes)], stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        urls = args.workdir / "urls.txt"
        urls.write_text("".join(f"http://127.0.0.1:{port}/{p.name}\n" for p in paths))
        return _compare(args, urls, server.pid, len(paths))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(_runs_root(args), ignore_errors=True)


def _compare(args: argparse.Namespace, urls: Path, server_pid: int, n: int) -> int:
    print(f"outputs under {_runs_root(args)}")
    print(f"ours: {args.processes} processes x {args.workers} threads, per-host "
          f"{args.per_host}; img2dataset: "
          f"{args.i2d_processes} processes x {args.i2d_threads} threads; {os.cpu_count()} CPUs")
    ratios = []
    for rep in range(args.repeats):
        print(f"run {rep + 1}/{args.repeats}")
        ours = run_ours(args, urls, server_pid)
        print(_report("ours", ours, n, args.limit_per_core), flush=True)
        if args.skip_img2dataset:
            continue
        theirs = run_img2dataset(args, urls, server_pid)
        print(_report("img2dataset", theirs, n, args.limit_per_core), flush=True)
        ratios.append((theirs["wall_s"] / ours["wall_s"], theirs["steady_s"] / ours["steady_s"],
                       theirs["steady_s"] / (ours["steady_s"] + ours["shutdown_s"]),
                       theirs["steady_cpu_s"] / ours["steady_cpu_s"]))
        print(f"  speed-up: end-to-end {ratios[-1][0]:.2f}x, steady state {ratios[-1][1]:.2f}x "
              f"({ratios[-1][2]:.2f}x with our worker shut-down counted), steady-state CPU per "
              f"photo {ratios[-1][3]:.2f}x", flush=True)
    if ratios:
        ends, steadies, with_shutdown, cpus = (", ".join(f"{r[i]:.2f}x" for r in ratios)
                                               for i in range(4))
        medians = [statistics.median(r[i] for r in ratios) for i in range(4)]
        print(f"speed-up over img2dataset, end-to-end: {ends} (median {medians[0]:.2f}x); "
              f"steady state (img2dataset's shard time, no start-up): {steadies} (median "
              f"{medians[1]:.2f}x, goal >= 1.5x; with our worker shut-down counted: "
              f"{with_shutdown}, median {medians[2]:.2f}x); steady-state CPU per photo "
              f"(img2dataset's / ours): {cpus} (median {medians[3]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
