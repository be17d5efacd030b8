"""Partitioning 10M labels with every scheme: time against the 5 s limit, peak memory against
the labels' own size (issue #4 "Scale"), and Flower Datasets' partitioners as a peer when
``flwr-datasets`` is installed (same labels, same machine, same run).

    python benchmarks/bench_partition.py [--n 10000000] [--peer-n 1000000]

Memory is the peak of numpy/Python allocations traced by ``tracemalloc`` during the call,
divided by the bytes of the int64 label array (the frame's columns for manifest schemes).
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import pandas as pd

from skewtools import partition

LIMIT_S = 5.0
CONTINENTS = np.array(["Africa", "Americas", "Asia", "Europe", "Oceania"])


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    labels = rng.choice(42, size=n, p=rng.dirichlet(np.ones(42)))  # skewed class sizes
    continent = pd.Categorical.from_codes(rng.integers(0, 5, n), categories=CONTINENTS)
    frame = pd.DataFrame({"label": labels, "continent": continent.astype(str)})
    return labels, frame


def schemes(labels: np.ndarray, frame: pd.DataFrame) -> dict[str, Callable[[], object]]:
    dir_inner = {"num_partitions": 4, "alpha": 0.5}
    keys = pd.Series(np.random.default_rng(2).permutation(len(labels))).astype(str)
    keyed = pd.DataFrame({"key": "fm" + keys, "label": labels})
    return {
        "iid": lambda: partition("iid", labels, num_partitions=5, seed=0),
        "iid round_robin": lambda: partition("iid", labels, num_partitions=5, method="round_robin"),
        "label_skew 0.6": lambda: partition(
            "label_skew", labels, num_partitions=5, noniid_fraction=0.6, seed=0
        ),
        "dirichlet 0.1": lambda: partition("dirichlet", labels, num_partitions=100, alpha=0.1),
        "classes_per_partition 2": lambda: partition(
            "classes_per_partition", labels, num_partitions=21, num_classes_per_partition=2
        ),
        "shards 2": lambda: partition("shards", labels, num_partitions=100),
        "quantity_skew": lambda: partition("quantity_skew", labels, num_partitions=100, alpha=1.0),
        "by_attribute continent": lambda: partition("by_attribute", frame, attribute="continent"),
        "mixed continent x dirichlet": lambda: partition(
            "mixed", frame, attribute="continent", inner="dirichlet", inner_params=dir_inner
        ),
        # Manifests with a key column are first put in key order (row-order independence).
        "label_skew, manifest keyed": lambda: partition(
            "label_skew", keyed, num_partitions=5, noniid_fraction=0.6, seed=0
        ),
    }


def measure(fn: Callable[[], object]) -> tuple[float, int]:
    gc.collect()
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


def flower_peer(n: int) -> None:
    try:
        from datasets import Dataset
        from flwr_datasets.partitioner import DirichletPartitioner, IidPartitioner
    except ImportError:
        print("\nflwr-datasets not installed: no peer comparison")
        return
    labels, _ = make_data(n, seed=1)
    ds = Dataset.from_dict({"label": labels})
    print(f"\npeer: Flower Datasets on {n:,} labels (all partitions materialised)")
    peers = {
        "iid": (
            lambda: IidPartitioner(num_partitions=5),
            lambda: partition("iid", labels, num_partitions=5),
        ),
        "dirichlet 0.5": (
            lambda: DirichletPartitioner(
                num_partitions=100, partition_by="label", alpha=0.5, seed=0
            ),
            lambda: partition("dirichlet", labels, num_partitions=100, alpha=0.5),
        ),
    }
    for name, (make_peer, ours) in peers.items():

        def run_peer(make_peer=make_peer) -> None:
            peer = make_peer()
            peer.dataset = ds
            for pid in range(peer.num_partitions):
                peer.load_partition(pid)

        peer_s, ours_s = _best_of(run_peer), _best_of(ours)
        print(f"  {name:<24} flower {peer_s:7.3f} s   skewtools {ours_s:7.3f} s   "
              f"ratio {peer_s / ours_s:6.1f}x")  # fmt: skip


def _best_of(fn: Callable[[], object], repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--peer-n", type=int, default=1_000_000)
    args = ap.parse_args()
    labels, frame = make_data(args.n)
    label_bytes = labels.nbytes
    print(
        f"{args.n:,} labels (int64, {label_bytes / 2**20:.0f} MiB), 42 classes; limit {LIMIT_S} s"
    )
    print(f"{'scheme':<30}{'seconds':>9}{'/ limit':>9}{'peak MiB':>10}{'/ labels':>10}")
    for name, fn in schemes(labels, frame).items():
        seconds, peak = measure(fn)
        print(f"{name:<30}{seconds:9.2f}{seconds / LIMIT_S:9.2f}"
              f"{peak / 2**20:10.0f}{peak / label_bytes:10.1f}")  # fmt: skip
    flower_peer(args.peer_n)


if __name__ == "__main__":
    main()
