"""What seeds cost: one run vs the same run with S seeds as one seed group (docs/engine.md), for one
run and for a mix of the default study's runs, with the per-partition loop and the vmap pass.

Each case trains the study's own runs (digits, 5 partitions, GN-/BN-LeNet) for ``--iterations``
iterations with the study's thread count and reports CPU seconds (this process; a shared
machine's load inflates wall time, not CPU time) and the ratio S seeds / 1 seed. Goal: 3 seeds
<= 1.5x one seed.

Whether seeds can ride along depends on what a step's time is made of, so the one-seed step
(``Trainer.step``: gradients + algorithm, vectorised) is split by measuring it at ``b`` = 20 and
1 samples per partition and with ``S`` seeds at ``b`` = 1, under the model
``t(S, b) = fixed + S x (replica + b x sample)``:

- **per-sample compute** (``b x sample``: convolutions, norms, pools; FLOP-bound, grows with the
  seeds);
- **per-replica vector work** (``replica``: the algorithm's and the engine's ``[k, P]`` ops and
  the per-parameter copies; memory-bound, grows with the seeds);
- **fixed per-op cost** (``fixed``: dispatch, kernel set-up, allocations of each of the step's
  ops; shared by the seeds when they are vectorised).

The ratio that split allows is ``(fixed + S x (replica + compute)) / step`` (printed next to
the measured one). The CPU's own limit is printed with it: the training FLOPs of one step
(forward + backward, counted by torch's flop counter) at the fastest float32 rate measured on
this core (the step's own per-sample compute, the model on 2,000 images at once, or a 1024 x
1024 product), and the ratio ``S`` seeds' FLOPs alone cost at that rate against the
whole one-seed step, everything else shared for free: the floor no vectorisation passes on this
CPU. The same ratio on one H100 comes from
``benchmarks/gpu_check_estimate.py``'s cost model (a step costs ``max(ops x launch, FLOPs /
throughput)``; vectorised, the ops do not grow with the seeds).

    python benchmarks/bench_seeds.py [--iterations 200] [--seeds 3] [--mix]
    python benchmarks/bench_seeds.py --split-only      # the step split and the H100 estimate
    python benchmarks/bench_seeds.py --threads 1 2      # the spread between thread counts
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench_simulation, gpu_check_estimate
from bench_simulation import count_ops  # noqa: E402
from gpu_check_estimate import profile_model, step_seconds  # noqa: E402

from training.engine import TrainConfig, Trainer  # noqa: E402
from training.study import run  # noqa: E402
from training.study.config import RunSpec, load_study  # noqa: E402
from training.study.groups import SeedGroup, execute_group  # noqa: E402

GOAL = 1.5


def _specs(iterations: int, seeds: int, vectorize: bool, mix: bool) -> list[list[RunSpec]]:
    """Groups of ``seeds`` runs: the default study's GN-LeNet BSP run at 100% non-IID, or (mix)
    every model x algorithm of its noniid/bn_vs_gn experiments at 0% and 100% non-IID."""
    study = load_study()
    wanted = [s for s in study.all_runs(["noniid", "bn_vs_gn"])
              if mix or (s.model == "gn-lenet" and s.algorithm == "bsp"
                         and s.noniid_fraction == 1.0)]
    groups = []
    for spec in wanted:
        train = {**spec.train, "iterations": iterations, "vectorize": vectorize,
                 "eval_every": max(1, iterations // 6)}
        groups.append([replace(spec, train=train, seed=seed) for seed in range(seeds)])
    return groups


def _cost(groups: list[list[RunSpec]]) -> tuple[float, float, list[dict]]:
    """CPU and wall seconds to train ``groups`` (each as one unit), and their rows."""
    cpu, wall, rows = time.process_time(), time.perf_counter(), []
    for group in groups:
        if len(group) == 1:
            rows.append(run.execute_run(group[0]))
        else:
            rows += [o["row"] for o in execute_group(SeedGroup(tuple(group)))]
    return time.process_time() - cpu, time.perf_counter() - wall, rows


def seeds_cost(iterations: int, seeds: int, mix: bool) -> None:
    for vectorize in (False, True):
        one = _cost([g[:1] for g in _specs(iterations, seeds, vectorize, mix)])
        many = _cost(_specs(iterations, seeds, vectorize, mix))
        path = "vector" if vectorize else "loop"   # vector: grouped replicas (LeNet) / vmap
        ratio = many[0] / one[0]
        print(f"{path}: 1 seed {one[0]:6.1f} s CPU ({one[1]:6.1f} s wall), {seeds} seeds "
              f"{many[0]:6.1f} s CPU ({many[1]:6.1f} s wall): {ratio:.2f}x "
              f"({'meets' if ratio <= GOAL else 'misses'} the {GOAL}x goal)")


def _trainer(spec: RunSpec, seeds: int, local_batch: int) -> Trainer:
    """The run's Trainer with ``seeds`` seeds as one group, ``local_batch`` samples per
    partition."""
    specs = [replace(spec, seed=seed) for seed in range(seeds)]
    data = [run.run_data(s) for s in specs]
    algorithm, _ = run.build_algorithm(spec)
    train = {**spec.train, "batch_size": local_batch * spec.num_partitions}
    cfg = replace(TrainConfig(**train), progress=False)
    return Trainer(lambda: run.build_model(spec.model, *data[0][2]), algorithm,
                   [p for parts, _, _ in data for p in parts], data[0][1], cfg,
                   seeds=[s.seed for s in specs])


def _step_seconds(trainer: Trainer, steps: int = 40, rounds: int = 5) -> float:
    """CPU seconds of one ``Trainer.step`` (best of ``rounds``)."""
    trainer.step()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(steps):
            trainer.step()
        best = min(best, (time.process_time() - start) / steps)
    return best


def matmul_flops_per_second(size: int = 1024, repeats: int = 20) -> float:
    """This process's float32 matmul rate at its thread count (CPU time, best of three)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.process_time() - start) / repeats)
    return 2 * size ** 3 / best


def train_flops(model: torch.nn.Module, images: int, shape: tuple[int, int, int]) -> float:
    """FLOPs of one forward + backward of ``images`` images of ``shape`` (C, H, W; no input
    gradient: the first layer's data needs none), counted by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(images, *shape)
    y = torch.zeros(images, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def model_flops_per_second(model: torch.nn.Module, shape: tuple[int, int, int],
                           flops_per_image: float, images: int = 2000) -> float:
    """The model's forward + backward rate at a batch large enough that per-op costs vanish:
    the fastest its kernels run on this core (CPU time, best of three)."""
    x = torch.randn(images, *shape)
    y = torch.randint(0, model.classifier.out_features, (images,))

    def once() -> None:
        torch.nn.functional.cross_entropy(model(x), y).backward()

    once()
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        once()
        best = min(best, time.process_time() - start)
    model.zero_grad(set_to_none=True)
    return flops_per_image * images / best   # FLOPs grow with the batch


def cpu_floor(step: float, flops: float, rate: float, seeds: int) -> float:
    """The S-seed / one-seed ratio when S seeds' FLOPs run at ``rate`` and nothing else costs
    anything: ``S x flops / rate / step``."""
    return seeds * flops / rate / step


def step_split(seeds: int) -> None:
    """The one-seed step split into fixed per-op cost, per-replica and per-sample work (module
    docstring), the seeds ratio that split predicts, the measured one and the H100 estimate."""
    spec = _specs(1, 1, True, False)[0][0]
    local = spec.train["batch_size"] // spec.num_partitions
    step = _step_seconds(_trainer(spec, 1, local))
    tiny = _step_seconds(_trainer(spec, 1, 1))
    tiny_many = _step_seconds(_trainer(spec, seeds, 1))
    sample = max(step - tiny, 0.0) / (local - 1)                 # per sample of each replica
    replica = max((tiny_many - tiny) / (seeds - 1) - sample, 0.0)    # per run's N replicas
    fixed_raw = tiny - replica - sample
    fixed = max(fixed_raw, 0.0)
    compute = sample * local
    many = _step_seconds(_trainer(spec, seeds, local))
    ops = count_ops(_trainer(spec, 1, local).step)[0]
    predicted = (fixed + seeds * (replica + compute)) / step
    if fixed_raw < 0:
        print(f"(the shared part is within the timings' noise ({fixed_raw / step:+.0%}): "
              "shown as 0; rerun on a quiet machine for a steadier split)")
    print(f"one-seed step ({spec.num_partitions} partitions x {local} samples): "
          f"{step * 1e3:.2f} ms CPU = per-sample compute {compute / step:.0%} + per-replica "
          f"vector work {replica / step:.0%} (both grow with the seeds) + fixed per-op cost "
          f"{fixed / step:.0%} ({ops} ops, {fixed / ops * 1e6:.1f} us each; shared)")
    print(f"{seeds}-seed step: {many * 1e3:.2f} ms = {many / step:.2f}x measured "
          f"(the split predicts {predicted:.2f}x; larger kernels run more efficiently, so the "
          "measured ratio can be lower)")
    classes, channels, size = run.run_data(spec)[2]
    model = run.build_model(spec.model, classes, channels, size)
    images, shape = local * spec.num_partitions, (channels, size, size)
    flops, matmul = train_flops(model, images, shape), matmul_flops_per_second()
    big = model_flops_per_second(model, shape, flops / images)
    own = flops / compute if compute > 0 else 0.0     # 0: the split read no per-sample time
    rate = max(matmul, big, own)
    floor = cpu_floor(step, flops, rate, seeds)
    print(f"CPU limit: a step trains {flops / 1e6:.0f} MFLOP; GFLOP/s: the step's per-sample "
          f"compute {own / 1e9:.1f}, the model on 2,000 images at once {big / 1e9:.1f}, a "
          f"1024^2 matmul {matmul / 1e9:.1f}; at the fastest, {seeds} seeds' FLOPs alone take "
          f"{seeds * flops / rate * 1e3:.2f} ms = {floor:.2f}x the one-seed step, leaving "
          f"{round(GOAL - floor, 2) + 0.0:.2f}x of the {GOAL}x goal for the per-replica work "
          f"({replica / step:.0%} of the step per seed now) and the fixed cost")
    profile = profile_model(model, shape, count_ops)
    h100 = [step_seconds(profile, images * s) for s in (1, seeds)]
    print(f"H100 estimate (gpu_check_estimate: {profile['fwd_flops'] / 1e6:.2f} MFLOP/image "
          f"forward, {profile['ops']:.0f} ops): {h100[0] * 1e3:.2f} ms vs {h100[1] * 1e3:.2f} ms "
          f"per step = {h100[1] / h100[0]:.2f}x "
          f"({'meets' if h100[1] / h100[0] <= GOAL else 'misses'} the {GOAL}x goal; launch-bound)")


def thread_spread(iterations: int, seeds: int, threads: list[int]) -> None:
    """Final accuracy of the same runs at each thread count: the spread a user sees."""
    finals = {}
    for count in threads:
        torch.set_num_threads(count)
        _, _, rows = _cost(_specs(iterations, seeds, True, True))
        finals[count] = {r["run_id"]: r["final_acc"] for r in rows}
    base, other = finals[threads[0]], finals[threads[-1]]
    diffs = sorted(abs(base[k] - other[k]) for k in base)
    print(f"threads {threads[0]} vs {threads[-1]} on {len(diffs)} runs: |d final_acc| mean "
          f"{sum(diffs) / len(diffs) * 100:.2f} points, median {diffs[len(diffs) // 2] * 100:.2f},"
          f" max {diffs[-1] * 100:.2f}; {sum(d == 0 for d in diffs)} identical")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--mix", action="store_true", help="the noniid + bn_vs_gn run mix")
    parser.add_argument("--threads", type=int, nargs=2, help="measure the spread instead")
    parser.add_argument("--split-only", action="store_true",
                        help="only the step split and the H100 estimate")
    args = parser.parse_args(argv)
    with open("/proc/loadavg") if os.path.exists("/proc/loadavg") else open(os.devnull) as f:
        print(f"load average: {f.read().strip() or 'n/a'}")
    if args.threads:
        thread_spread(args.iterations, args.seeds, args.threads)
        return 0
    torch.set_num_threads(load_study().threads or torch.get_num_threads())
    step_split(args.seeds)
    if not args.split_only:
        seeds_cost(args.iterations, args.seeds, args.mix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
