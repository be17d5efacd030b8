"""Simulation overhead: images/s and dispatched ops per step of each algorithm on K partitions vs
the limit, and how the cost per partition grows with K.

The limit is plain single-model momentum SGD on the same total batch (one forward/backward of
``batch`` images and one optimizer step). Each algorithm runs in the simulation Trainer with the
per-partition loop and with the vmap pass, on random in-memory data (3x32x32 unless told; speed
does not depend on the pixels), so the device-resident sampler is part of the step.
Configurations are timed in interleaved rounds and each keeps its best round, which damps the
noise of a shared machine. Ops per step: every ATen op dispatched in one step (a
TorchDispatchMode counter), the host-overhead bound on a GPU. Goals: BSP, FedAvg, FedProx, FedOpt
(DiLoCo's outer step), SCAFFOLD and EF-top-k >= 90% of the limit, Gaia and DGC >= 70%;
per-partition time at K=500 within 1.3x of K=5. The participation table times FedAvg at K=5, at
the largest K, and at the largest K with a sampled fraction of partitions per round
(``--scaling-participation``): time per training partition and the state kept per partition.

    python benchmarks/bench_simulation.py [--models lenet resnet20 googlenet] [--device cuda]
    python benchmarks/bench_simulation.py --quick          # LeNet/ResNet-20, BSP+Gaia, K<=50
    python benchmarks/bench_simulation.py --scaling-only --scaling-k 5 20 50 100 200 500
    python benchmarks/bench_simulation.py --scaling-only --scaling-k 5 500 --modes loop \
        --scaling-participation 0.1
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from training.algorithms import create_algorithm
from training.engine import PartitionData, TrainConfig, Trainer
from training.models import create_model

ALGORITHMS: dict[str, dict] = {
    "bsp": {},
    "fedavg": {"iter_local": 50},
    "gaia": {"t0": 0.2},
    "dgc": {"sparsity": 0.999, "warmup_epoch_iterations": 0},        # steady state
    "dgc-warmup": {"sparsity": 0.999, "warmup_epoch_iterations": 10**9},   # 75% stage
    "fedprox": {"mu": 0.01, "iter_local": 50},
    "fedopt-diloco": {"iter_local": 50, "server_lr": 0.7, "server_momentum": 0.9,
                      "nesterov": True},                                  # DiLoCo's outer step
    "scaffold": {"iter_local": 50},
    "ef_topk": {"sparsity": 0.999},
    "fedbn": {"iter_local": 50},          # BatchNorm kept local (ResNet-20; LeNet has none)
}
GOALS = {"bsp": 0.9, "fedavg": 0.9, "gaia": 0.7, "dgc": 0.7, "dgc-warmup": 0.7, "fedprox": 0.9,
         "fedopt-diloco": 0.9, "scaffold": 0.9, "ef_topk": 0.9, "fedbn": 0.9}
SCALING_GOAL = 1.3


@dataclass(frozen=True)
class Setup:
    device: str = "cpu"
    image_size: int = 32
    in_channels: int = 3
    channels_last: bool = False
    bf16: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_channels, self.image_size, self.image_size)

    def model_fn(self, name: str) -> Callable[[], nn.Module]:
        return lambda: create_model(name, num_classes=10, in_channels=self.in_channels,
                                    image_size=self.image_size)


# ops that only make a new view of existing memory: dispatched, but no kernel launch on a GPU
VIEW_OPS = frozenset({"view", "_unsafe_view", "permute", "detach", "slice", "transpose", "t",
                      "unsqueeze", "squeeze", "as_strided", "expand", "alias", "select",
                      "reshape", "split", "split_with_sizes", "unbind", "lift_fresh"})


# ops that make the host wait for the device (a value read back, a data-dependent shape); a
# copy between devices is counted too. One of these per step stalls a GPU's queue every step.
SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
                      "unique_consecutive", "equal", "is_nonzero", "_assert_async"})


def _bool_indexed(args: tuple) -> bool:
    """``x[mask]`` / ``x[mask] = v``: the result's shape depends on the mask's values."""
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def _crosses_devices(args: tuple, kwargs: dict) -> bool:
    devices = {a.device.type for a in args if isinstance(a, torch.Tensor)}
    target = kwargs.get("device")
    if target is not None:
        devices.add(torch.device(target).type)
    return len(devices) > 1


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched while active, those that are not mere views, and those
    that make the host wait for the device (:data:`SYNC_OPS`, copies across devices)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.compute_ops = 0
        self.syncs: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        self.ops += 1
        self.compute_ops += name not in VIEW_OPS
        masked = name in ("index", "index_put_", "index_put") and _bool_indexed(args)
        moved = name in ("_to_copy", "copy_") and _crosses_devices(args, kwargs)
        if name in SYNC_OPS or masked or moved:
            self.syncs.append(name)
        return func(*args, **kwargs)


def count_ops(step: Callable[[], object]) -> tuple[int, int, int]:
    """(all ops, non-view ops, host-sync ops) dispatched by one call of ``step``. On CUDA the
    syncs also include what ``torch.cuda.set_sync_debug_mode`` reports (ops synchronising
    inside a kernel library, which dispatch cannot see)."""
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    with warnings.catch_warnings(record=True) as caught, OpCounter() as counter:
        warnings.simplefilter("always")
        if cuda:
            torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            if cuda:
                torch.cuda.set_sync_debug_mode("default")
    reported = sum("synchronizing" in str(w.message) for w in caught)
    return counter.ops, counter.compute_ops, max(len(counter.syncs), reported)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def single_model_step(setup: Setup, model: str, batch: int) -> Callable[[], None]:
    net = setup.model_fn(model)().to(setup.device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, *setup.shape, device=setup.device)
    y = torch.randint(0, 10, (batch,), device=setup.device)

    def step() -> None:
        optimizer.zero_grad()
        with torch.autocast(torch.device(setup.device).type, torch.bfloat16, enabled=setup.bf16):
            loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        optimizer.step()
    return step


def make_trainer(setup: Setup, model: str, algorithm: str, vectorize: bool, partitions: int,
                 batch: int, participation: float | None = None) -> Trainer:
    gen = torch.Generator().manual_seed(0)
    per_partition = max(2 * batch // partitions, 8)
    train = [PartitionData(torch.randn(per_partition, *setup.shape, generator=gen),
                           torch.randint(0, 10, (per_partition,), generator=gen))
             for _ in range(partitions)]
    algo = create_algorithm(algorithm.split("-")[0], **ALGORITHMS[algorithm])
    config = TrainConfig(iterations=10**9, batch_size=batch, vectorize=vectorize, progress=False,
                         device=setup.device, channels_last=setup.channels_last,
                         bf16=setup.bf16, participation=participation)
    val = PartitionData(torch.randn(partitions, *setup.shape, generator=gen),
                        torch.randint(0, 10, (partitions,), generator=gen))
    return Trainer(setup.model_fn(model), algo, train, val, config)


def best_seconds(steps: dict[str, Callable[[], object]], n: int, rounds: int,
                 device: str) -> dict[str, float]:
    """Seconds per step of each function: best of ``rounds`` interleaved rounds of ``n``."""
    for step in steps.values():   # warm-up: allocator, vmap probe, index blocks
        step()
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(rounds):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                step()
            sync(device)
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return best


def speed_table(setup: Setup, model: str, algorithms: list[str], partitions: int, batch: int,
                steps: int, rounds: int, modes: tuple[str, ...] = ("loop", "vmap")) -> list[dict]:
    """One row per configuration: images/s, ratio to the limit, goal, ops per step."""
    fns: dict[str, Callable[[], object]] = {"limit": single_model_step(setup, model, batch)}
    for algorithm in algorithms:
        for mode in modes:
            fns[f"{algorithm}/{mode}"] = make_trainer(setup, model, algorithm, mode == "vmap",
                                                      partitions, batch).step
    seconds = best_seconds(fns, steps, rounds, setup.device)
    ops = {name: count_ops(fn) for name, fn in fns.items()}
    limit = batch / seconds["limit"]
    rows = []
    for name, s in seconds.items():
        algorithm = name.split("/")[0]
        rate = batch / s
        rows.append({"model": model, "config": name, "images_per_s": rate,
                     "vs_limit": rate / limit, "goal": GOALS.get(algorithm),
                     "ops_per_step": ops[name][0], "compute_ops_per_step": ops[name][1],
                     "syncs_per_step": ops[name][2],
                     "partitions": partitions, "batch": batch})
    return rows


def scaling_table(setup: Setup, model: str, ks: list[int], local_batch: int, steps: int,
                  rounds: int, modes: tuple[str, ...] = ("loop", "vmap"),
                  algorithm: str = "bsp") -> list[dict]:
    """Per-partition step time at each K (fixed batch per partition), relative to the first K,
    and the memory each partition takes (parameters, buffers, algorithm state, its data)."""
    rows = []
    for mode in modes:
        base = None
        for k in ks:
            trainer = make_trainer(setup, model, algorithm, mode == "vmap", k, k * local_batch)
            seconds = best_seconds({"step": trainer.step}, steps, rounds, setup.device)["step"]
            per_partition = seconds / k
            base = base or per_partition
            rows.append({"model": model, "mode": mode, "k": k,
                         "ms_per_partition": 1e3 * per_partition,
                         "vs_first_k": per_partition / base,
                         "ops_per_step": count_ops(trainer.step)[0],
                         "state_mib_per_partition": state_bytes(trainer) / k / 2**20})
            if setup.device.startswith("cuda"):
                rows[-1]["cuda_peak_mib_per_partition"] = (
                    torch.cuda.max_memory_allocated() / k / 2**20)
                torch.cuda.reset_peak_memory_stats()
            del trainer
    return rows


def participation_table(setup: Setup, model: str, k: int, local_batch: int,
                        participation: float, steps: int, rounds: int,
                        mode: str = "loop") -> list[dict]:
    """FedAvg at K=5, at ``k``, and at ``k`` with ``participation`` of the partitions per round:
    ms per *training* partition (relative to K=5) and the state per partition (all ``k``)."""
    rows, base = [], None
    for partitions, fraction in ((5, None), (k, None), (k, participation)):
        trainer = make_trainer(setup, model, "fedavg", mode == "vmap", partitions,
                               partitions * local_batch, fraction)
        seconds = best_seconds({"step": trainer.step}, steps, rounds, setup.device)["step"]
        training = trainer.stack.params.shape[0]    # the round's participants (all without)
        per_partition = seconds / training
        base = base or per_partition
        rows.append({"model": model, "mode": mode, "k": partitions,
                     "participation": fraction or 1.0, "training": training,
                     "ms_per_training_partition": 1e3 * per_partition,
                     "vs_k5": per_partition / base,
                     "state_mib_per_partition": state_bytes(trainer) / partitions / 2**20})
        del trainer
    return rows


def state_bytes(trainer: Trainer) -> int:
    """Bytes of every tensor the Trainer keeps for its partitions (excluding activations)."""
    tensors = [trainer.stack.params, *trainer.stack.buffers.values()]
    if trainer.rounds is not None:     # the global model a sampled-out partition holds
        tensors += [trainer.rounds.global_params, *trainer.rounds.global_buffers.values()]
    state = vars(trainer.state) if hasattr(trainer.state, "__dict__") else {}
    tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
    data = getattr(trainer._batches, "nbytes", 0)
    return sum(t.nbytes for t in tensors) + data


def print_speed(rows: list[dict]) -> None:
    first = rows[0]
    print(f"\n{first['model']}: K={first['partitions']}, batch {first['batch']}")
    print(f"{'configuration':<20}{'images/s':>10}{'vs limit':>10}{'goal':>9}{'ops/step':>10}"
          f"{'non-view':>10}{'syncs':>7}")
    for r in rows:
        goal = "" if r["goal"] is None else (
            f"{r['goal']:.1f} {'ok' if r['vs_limit'] >= r['goal'] else 'MISS'}")
        print(f"{r['config']:<20}{r['images_per_s']:>10.0f}{r['vs_limit']:>10.2f}{goal:>9}"
              f"{r['ops_per_step']:>10}{r['compute_ops_per_step']:>10}{r['syncs_per_step']:>7}")


def print_scaling(rows: list[dict]) -> None:
    print(f"\nK scaling ({rows[0]['model']}, BSP, fixed batch per partition; goal: <= "
          f"{SCALING_GOAL}x at the largest K)")
    print(f"{'mode':<6}{'K':>5}{'ms/partition':>14}{'vs first K':>12}{'ops/step':>10}"
          f"{'state MiB/partition':>21}")
    for r in rows:
        print(f"{r['mode']:<6}{r['k']:>5}{r['ms_per_partition']:>14.2f}{r['vs_first_k']:>12.2f}"
              f"{r['ops_per_step']:>10}{r['state_mib_per_partition']:>21.3f}")


def print_participation(rows: list[dict]) -> None:
    print(f"\nPartial participation ({rows[0]['model']}, FedAvg, {rows[0]['mode']}, fixed batch "
          "per partition)")
    print(f"{'K':>5}{'participation':>15}{'training':>10}{'ms/training partition':>23}"
          f"{'vs K=5':>8}{'state MiB/partition':>21}")
    for r in rows:
        print(f"{r['k']:>5}{r['participation']:>15.2f}{r['training']:>10}"
              f"{r['ms_per_training_partition']:>23.2f}{r['vs_k5']:>8.2f}"
              f"{r['state_mib_per_partition']:>21.3f}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet", "resnet20", "googlenet"])
    parser.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS),
                        choices=list(ALGORITHMS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--in-channels", type=int, default=3)
    parser.add_argument("--partitions", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", nargs="+", default=["loop", "vmap"], choices=["loop", "vmap"])
    parser.add_argument("--scaling-k", nargs="+", type=int, default=[5, 20, 50, 100, 200, 500])
    parser.add_argument("--scaling-model", default="lenet")
    parser.add_argument("--scaling-batch", type=int, default=4, help="batch per partition")
    parser.add_argument("--scaling-only", action="store_true")
    parser.add_argument("--scaling-participation", type=float, default=None,
                        help="also time FedAvg at the largest K with this fraction per round")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="LeNet and ResNet-20, BSP and Gaia, 3 steps x 2 rounds, K <= 50")
    args = parser.parse_args(argv)
    if args.quick:
        args.models, args.algorithms = ["lenet", "resnet20"], ["bsp", "gaia"]
        args.steps, args.rounds = 3, 2
        args.scaling_k = [k for k in args.scaling_k if k <= 50]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    torch.set_num_threads(args.threads)
    setup = Setup(args.device, args.image_size, args.in_channels, args.channels_last, args.bf16)
    print(f"device {args.device}, {torch.get_num_threads()} thread(s)")
    if not args.scaling_only:
        for name in args.models:
            print_speed(speed_table(setup, name, args.algorithms, args.partitions, args.batch,
                                    args.steps, args.rounds, tuple(args.modes)))
    print_scaling(scaling_table(setup, args.scaling_model, args.scaling_k, args.scaling_batch,
                                args.steps, args.rounds, tuple(args.modes)))
    if args.scaling_participation is not None:
        print_participation(participation_table(
            setup, args.scaling_model, max(args.scaling_k), args.scaling_batch,
            args.scaling_participation, args.steps, args.rounds, args.modes[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
