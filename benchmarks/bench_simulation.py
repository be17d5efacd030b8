"""Simulation overhead: images/s of each algorithm on K partitions vs the limit.

The limit is plain single-model momentum SGD on the same total batch (one forward/backward of
``batch`` images and one optimizer step). Each algorithm runs in the simulation Trainer with the
per-partition loop (the CPU default) and with the vmap pass, on random inputs (3x32x32 unless
told; speed does not depend on the pixels). Configurations are timed in interleaved rounds and
each keeps its best round, which damps the noise of a shared machine. Goal: BSP and FedAvg
>= 90% of the limit, Gaia and DGC >= 70%.

    python benchmarks/bench_simulation.py [--models lenet resnet20] [--steps 10] [--rounds 3]
    python benchmarks/bench_simulation.py --models lenet --image-size 16 --in-channels 1 --batch 50
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from training.algorithms import create_algorithm
from training.engine import PartitionData, TrainConfig, Trainer
from training.models import create_model

ALGORITHMS: dict[str, dict] = {
    "bsp": {},
    "fedavg": {"iter_local": 50},
    "gaia": {"t0": 0.2},
    "dgc": {"sparsity": 0.999, "warmup_epoch_iterations": 0},        # steady state
    "dgc-warmup": {"sparsity": 0.999, "warmup_epoch_iterations": 10**9},   # 75% stage
}
GOALS = {"bsp": 0.9, "fedavg": 0.9, "gaia": 0.7, "dgc": 0.7, "dgc-warmup": 0.7}


def single_model_step(model_fn: Callable[[], nn.Module], batch: int,
                      shape: tuple[int, ...]) -> Callable[[], None]:
    model = model_fn()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return step


def trainer_step(model_fn: Callable[[], nn.Module], algorithm: str, vectorize: bool,
                 partitions: int, batch: int, shape: tuple[int, ...]) -> Callable[[], object]:
    gen = torch.Generator().manual_seed(0)
    per_partition = max(2 * batch // partitions, 8)
    train = [PartitionData(torch.randn(per_partition, *shape, generator=gen),
                           torch.randint(0, 10, (per_partition,), generator=gen))
             for _ in range(partitions)]
    algo = create_algorithm(algorithm.split("-")[0], **ALGORITHMS[algorithm])
    config = TrainConfig(iterations=10**9, batch_size=batch, vectorize=vectorize, progress=False)
    return Trainer(model_fn, algo, train, train[0], config).step


def best_rate(steps: dict[str, Callable[[], object]], n: int, rounds: int,
              batch: int) -> dict[str, float]:
    """Images/s of each step function: best of ``rounds`` interleaved rounds of ``n`` steps."""
    for step in steps.values():   # warm-up: allocator, vmap tracing
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(n):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return {name: batch / seconds for name, seconds in best.items()}


def bench_model(name: str, args: argparse.Namespace) -> None:
    def model_fn() -> nn.Module:
        return create_model(name, num_classes=10, in_channels=args.in_channels,
                            image_size=args.image_size)

    shape = (args.in_channels, args.image_size, args.image_size)
    steps: dict[str, Callable[[], object]] = {
        "limit": single_model_step(model_fn, args.batch, shape)}
    for algorithm in args.algorithms:
        for vectorize in (False, True):
            label = f"{algorithm}/{'vmap' if vectorize else 'loop'}"
            steps[label] = trainer_step(model_fn, algorithm, vectorize, args.partitions,
                                        args.batch, shape)
    rates = best_rate(steps, args.steps, args.rounds, args.batch)
    limit = rates["limit"]
    print(f"\n{name} on {'x'.join(map(str, shape))}: K={args.partitions}, batch {args.batch}, "
          f"{torch.get_num_threads()} thread(s)")
    print(f"{'configuration':<22}{'images/s':>10}{'vs limit':>10}{'goal':>7}{'vs loop':>9}")
    print(f"{'single-model SGD':<22}{limit:>10.0f}{1.0:>10.2f}")
    for algorithm in args.algorithms:
        loop = rates[f"{algorithm}/loop"]
        for mode in ("loop", "vmap"):
            rate = rates[f"{algorithm}/{mode}"]
            goal = GOALS[algorithm]
            mark = "ok" if rate / limit >= goal else "MISS"
            print(f"{algorithm + '/' + mode:<22}{rate:>10.0f}{rate / limit:>10.2f}"
                  f"{goal:>5.1f} {mark:<4}{rate / loop:>6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "resnet20"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS),
                        choices=list(ALGORITHMS))
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    for name in args.models:
        bench_model(name, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
