"""Train one run with one process per partition over torch.distributed (docs/reference.md §3-4).

    torchrun --nproc_per_node=5 -m pipelines.train_distributed --dataset digits \
        --model gn-lenet --algorithm gaia --param t0=0.2 --noniid-fraction 1.0 \
        --iterations 2000 --out result.json
    torchrun --nnodes=2 --nproc_per_node=1 --rdzv-endpoint=HOST:29500 \
        -m pipelines.train_distributed --spec run_spec.json --out result.json

gloo on CPU, NCCL on GPU (``--backend`` to force). ``--spec`` takes a study run (a RunSpec as
JSON); otherwise the flags build one. Rank 0 writes the result row (the study's format) to
``--out`` and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines._cli import (
    FieldOption,
    add_field_options,
    field_options,
    given_values,
    parse_param,
)
from training.datasets import DIGITS_IMAGE_SIZE
from training.engine import TrainConfig
from training.study.config import RunSpec
from training.study.data_specs import Cifar10Spec, DigitsSpec
from training.study.run import check_run


def train_options() -> tuple[FieldOption, ...]:
    """One flag per TrainConfig field, put in the run's train table only when given
    (TrainConfig's default stands otherwise), so a field added there is a flag here. The seed is
    the run's (``--seed``); a command-line run is short unless told (``--iterations``)."""
    return field_options(TrainConfig, override=True, skip=("seed",), defaults={"iterations": 1000})


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="torchrun ... -m pipelines.train_distributed",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", type=Path, help="a RunSpec as JSON (overrides the run flags)")
    ap.add_argument("--dataset", default="digits", choices=["digits", "cifar10"])
    ap.add_argument("--data-root", help="folder holding cifar-10-batches-py (cifar10)")
    ap.add_argument("--image-size", type=int, help="the side (px) digits are resized to for "
                    f"training, the study's [dataset] image_size (default {DIGITS_IMAGE_SIZE})")
    ap.add_argument("--model", default="gn-lenet",
                    help="as in the study: gn-lenet, resnet20, gn-timm:resnet18, ...")
    ap.add_argument("--algorithm", default="bsp")
    ap.add_argument("--param", action="append", type=parse_param, default=[],
                    metavar="KEY=VALUE", help="an algorithm parameter, repeatable (t0=0.2)")
    ap.add_argument("--noniid-fraction", type=float, default=1.0)
    ap.add_argument("--partitioner", help="a skewtools partitioner (default: the dataset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", choices=["gloo", "nccl"], help="default: nccl with CUDA")
    ap.add_argument("--out", type=Path, help="rank 0 writes the result row here (JSON)")
    train = ap.add_argument_group("training", "training.engine.TrainConfig fields (the run's "
                                  "seed is --seed); the study's [train] table")
    add_field_options(train, train_options())
    train.add_argument("--train", action="append", type=parse_param, default=[],
                       metavar="KEY=VALUE", help="a TrainConfig field, repeatable (lr=0.01); "
                       "applied after the flags above")
    return ap


def spec_from_args(args: argparse.Namespace, world_size: int) -> RunSpec:
    if args.spec is not None:
        return RunSpec(**json.loads(args.spec.read_text()))
    data = (DigitsSpec(image_size=args.image_size) if args.dataset == "digits"
            else Cifar10Spec(root=args.data_root))
    dataset: dict[str, Any] = data.to_dict()
    train = {**given_values(args, train_options()), **dict(args.train)}
    return RunSpec(dataset, args.model, args.algorithm, dict(args.param), args.noniid_fraction,
                   world_size, args.partitioner or data.default_partitioner, args.seed, train,
                   "distributed")


def run_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the run the flags (or ``--spec``) describe, or None; checked in every
    process before any starts the process group, so a typo is one line, not a traceback per
    rank."""
    world = int(os.environ.get("WORLD_SIZE", "2"))
    try:
        spec = spec_from_args(args, world)
    except FileNotFoundError:
        return f"--spec {args.spec}: no such file"
    except (OSError, ValueError, TypeError) as exc:    # bad JSON, or not a RunSpec's fields
        if args.spec is None:                          # a flag's value (the dataset's spec)
            return str(exc)
        return f"--spec {args.spec}: not a run spec ({exc})"
    if "WORLD_SIZE" in os.environ and spec.num_partitions != world:
        return (f"the run has {spec.num_partitions} partitions but {world} processes: use "
                f"torchrun --nproc_per_node={spec.num_partitions}")
    if spec.dataset.get("name") == "cifar10":     # checked here: every rank would fail
        folder = Path(str(spec.dataset.get("root"))) / "cifar-10-batches-py"
        if not folder.is_dir():
            return f"--data-root {spec.dataset.get('root')}: no {folder.name} folder in it"
    try:
        check_run(spec)       # the study's checks, for this one run
    except (KeyError, ValueError, TypeError) as exc:
        return str(exc.args[0] if exc.args else exc)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.spec is None and args.dataset != "digits" and args.data_root is None:
        parser.error(f"--dataset {args.dataset} needs --data-root (the dataset's folder)")
    problem = run_problem(args)
    if problem is not None:
        if os.environ.get("RANK", "0") == "0":      # once, not once per process
            print(f"error: {problem}", file=sys.stderr)
        return 2
    from training.study.distributed_run import run_and_write

    info, spec, result = run_and_write(lambda world: spec_from_args(args, world), args.out,
                                       args.backend)
    if info.rank == 0:
        print(f"{spec.algorithm} {spec.model} on {spec.dataset['name']}, "
              f"{info.world_size} partitions ({info.backend}): final accuracy "
              f"{result.final.mean:.4f}, {result.relative_communication:.4f}x BSP traffic, "
              f"{result.wall_time_s:.1f} s")
        print(json.dumps({"per_partition": result.final.per_partition, "spec": asdict(spec)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
