"""Iterations/s of the torch.distributed engine (2 gloo processes) vs the one-process simulation.

Same work in both: scikit-learn digits at 16x16, 2 label-skewed partitions, global batch 100,
the same model and algorithm, one evaluation at the end. Only the training loop is timed
(``RunResult.wall_time_s``, rank 0 for the distributed engine), not process start-up. The
simulation runs with 1 and with 2 intra-op threads; each distributed process gets 1 thread, so
"sim, 2 threads" and "dist, 2 x 1 thread" use the same cores.

    python benchmarks/bench_distributed.py [--iterations 200] [--model gn-lenet]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import skewtools
from training.algorithms import create_algorithm
from training.datasets import PartitionData, load_digits_dataset, split_partitions
from training.distributed import launch_local, run_distributed
from training.engine import TrainConfig, Trainer
from training.models import create_model

PARAMS = {"bsp": {}, "gaia": {"t0": 0.2}, "fedavg": {"iter_local": 50}, "dgc": {}}


def _setup(model: str, iterations: int) -> tuple[Callable[[], torch.nn.Module],
                                                  list[PartitionData], PartitionData, TrainConfig]:
    data = load_digits_dataset(image_size=16)
    part = skewtools.partition("label_skew", data.train.y.numpy(), num_partitions=2,
                               noniid_fraction=1.0, seed=0)
    parts = split_partitions(data.train, part.indices)
    config = TrainConfig(iterations=iterations, batch_size=100, eval_every=iterations,
                         progress=False)

    def model_fn() -> torch.nn.Module:
        return create_model(model, num_classes=10, in_channels=1, image_size=16)

    return model_fn, parts, data.val, config


def _dist_worker(rank: int, model: str, algorithm: str, iterations: int, out: str) -> None:
    model_fn, parts, val, config = _setup(model, iterations)
    result = run_distributed(model_fn, create_algorithm(algorithm, **PARAMS[algorithm]), parts,
                             val, config)
    if rank == 0:
        Path(out).write_text(json.dumps({"wall": result.wall_time_s, "acc": result.final.mean}))


def _simulation(model: str, algorithm: str, iterations: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    model_fn, parts, val, config = _setup(model, iterations)
    result = Trainer(model_fn, create_algorithm(algorithm, **PARAMS[algorithm]), parts, val,
                     config).run()
    return {"wall": result.wall_time_s, "acc": result.final.mean}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--model", default="gn-lenet")
    ap.add_argument("--algorithms", nargs="+", default=["bsp", "fedavg"])
    args = ap.parse_args(argv)
    print(f"{args.model}, digits 16x16, 2 partitions, batch 100, {args.iterations} iterations")
    print(f"{'algorithm':<9} {'engine':<24} {'it/s':>8} {'final acc':>9}  ratio dist/sim")
    for algorithm in args.algorithms:
        sims = {t: _simulation(args.model, algorithm, args.iterations, t) for t in (1, 2)}
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rank0.json"
            start = time.perf_counter()
            launch_local(_dist_worker, 2, (args.model, algorithm, args.iterations, str(out)))
            total = time.perf_counter() - start
            dist = json.loads(out.read_text())
        dist_rate = args.iterations / dist["wall"]
        for threads, sim in sims.items():
            rate = args.iterations / sim["wall"]
            print(f"{algorithm:<9} {f'simulation, {threads} thread(s)':<24} {rate:>8.1f} "
                  f"{sim['acc']:>9.3f}  {dist_rate / rate:.2f}x")
        print(f"{algorithm:<9} {'distributed, 2 x 1 thr':<24} {dist_rate:>8.1f} "
              f"{dist['acc']:>9.3f}  (launch + start-up + run: {total:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
