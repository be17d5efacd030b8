"""One-command check of a CUDA machine: every shipped study config trains, the engines are fast.

    python benchmarks/gpu_check.py --out gpu_check.json                 # CUDA, < 8 min on one H100
    python benchmarks/gpu_check.py --device cpu --quick --out q.json    # a tiny subset, on CPU

Sections (each timed; ``--sections`` picks some):

- ``configs``: runs of every ``pipelines/configs/*.toml`` (expanded by ``load_study``; each
  kind of run, ``gpu_check_plan.run_kind``, once over all configs, at most ``--max-runs`` per
  config) for
  ``--iterations`` on the simulation engine, on a fake CIFAR-10 folder and fake Flickr-Mammal
  shards (nothing can be downloaded; the numbers are about speed and finiteness, not accuracy);
- ``torchrun``: ``--max-distributed-runs`` of them under torchrun (one process per partition,
  mapped onto the GPUs by ``training.distributed.plan_device``);
- ``speed``: ``bench_simulation``'s table (images/s, ops per step vs plain training, host syncs
  per step: any is a failure) and its K-scaling table;
- ``clean``: the cleaning stage's images/s for pnasnet5large and efficientnet_lite0 (random
  weights) and how often bf16 autocast picks the same top-5 classes as float32;
- ``precision``: one CIFAR-10 GoogLeNet run in float32 and one under bf16 autocast with
  channels-last inputs (on CPU: channels-last only; bf16 autocast is a CUDA option), s/step each;
- ``flickr``: one Flickr-Mammal non-IID run (geographic partitions) read through one persistent
  DataLoader per partition (``training.study.flickr_loader``), long enough to pass over each
  partition's shards more than once;
- ``skewscout``: one SkewScout run (CIFAR-10 GoogLeNet, DGC) that travels models.

Every run also prints an estimate of the full check's time on one H100, per section, from a cost
model priced with what this machine measures (``gpu_check_estimate``: FLOPs and op counts per
model, JPEG decode time per photo); ``--device cpu --quick`` is how to get it without a GPU.

Fails (exit 1) on any error or non-finite value; writes a JSON summary to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench_simulation, gpu_check_data
from bench_simulation import Setup, scaling_table, speed_table  # noqa: E402
from gpu_check_data import clean_speed, write_fake_cifar, write_fake_flickr  # noqa: E402
from gpu_check_plan import (  # noqa: E402
    h100_estimate,
    one_run,
    pick_runs,
    print_estimate,
    run_kind,  # noqa: F401  (part of the check's API: what "a kind of run" is)
)

from training.study.config import DEFAULT_CONFIG, RunSpec, load_study  # noqa: E402
from training.study.run import execute_run  # noqa: E402

SECTIONS = ("configs", "torchrun", "speed", "clean", "precision", "flickr", "skewscout")
log = logging.getLogger("gpu_check")


def finite(value: Any) -> bool:
    """Every number in a (nested) result is finite."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, (int, float)):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(finite(v) for v in value)
    return True




def shrink(spec: RunSpec, args: argparse.Namespace, data: dict[str, str],
           engine: str = "simulation") -> RunSpec:
    """``spec`` on the fake data, for ``args.iterations`` on ``args.device``."""
    dataset = dict(spec.dataset)
    if dataset["name"] == "cifar10":
        dataset["root"] = data["cifar10"]
    elif dataset["name"] == "flickr_mammal":
        dataset.update(root=data["flickr_mammal"], val_samples=64)
        if args.quick:
            dataset.update(image_size=32, num_workers=0)
    train = {**spec.train, "iterations": args.iterations, "eval_every": args.iterations,
             "device": args.device}
    if args.quick:
        train.update(batch_size=2 * spec.num_partitions, eval_batch_size=16)
    scout = spec.skewscout and {**spec.skewscout, "travel_interval": max(args.iterations // 5, 1),
                                "max_travel_interval": None}
    return replace(spec, dataset=dataset, train=train, skewscout=scout, engine=engine)


def run_checked(spec: RunSpec) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        row = execute_run(spec)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, then the check fails
        return {"run_id": spec.run_id, "ok": False, "error": f"{type(exc).__name__}: {exc}",
                "trace": traceback.format_exc()[-2000:]}
    ok = finite({k: v for k, v in row.items() if k != "spec"})
    return {"run_id": spec.run_id, "ok": ok, "model": spec.model, "algorithm": spec.algorithm,
            "mode": spec.mode, "dataset": spec.dataset["name"], "engine": spec.engine,
            "final_acc": row["final_acc"], "seconds": round(time.perf_counter() - start, 2),
            "error": "" if ok else "non-finite value in the result"}


def config_runs(args: argparse.Namespace, data: dict[str, str], engine: str) -> list[dict]:
    out = []
    budget = args.max_runs if engine == "simulation" else args.max_distributed_runs
    configs = sorted(DEFAULT_CONFIG.parent.glob("*.toml"))
    seen: set[tuple] = set()     # each kind of run once across the configs (pick_runs)
    for path in configs:
        if engine == "distributed" and budget <= 0:
            break
        specs = pick_runs(load_study(path).all_runs(),
                          budget if engine == "simulation" else 1,
                          seen if engine == "simulation" else None)
        for spec in specs:
            result = run_checked(shrink(spec, args, data, engine))
            result["config"] = path.stem
            print(f"  {path.stem:<30} {spec.model:<12} {spec.algorithm:<7} {spec.mode:<9} "
                  f"{'ok' if result['ok'] else 'FAIL ' + result['error'][:200]}", flush=True)
            out.append(result)
        budget -= len(specs) if engine == "distributed" else 0
    return out


def speed(args: argparse.Namespace) -> dict[str, list[dict]]:
    setup = Setup(args.device)
    models = ["lenet"] if args.quick else ["lenet", "resnet20", "googlenet"]
    algorithms = ["bsp"] if args.quick else ["bsp", "fedavg", "gaia", "dgc"]
    steps, rounds = (1, 1) if args.quick else (10, 3)
    ks = [5, 20] if args.quick else [5, 20, 50, 100, 200]
    tables = {"speed": [], "scaling": []}
    for model in models:
        tables["speed"] += speed_table(setup, model, algorithms, 5, 100 if not args.quick else 20,
                                       steps, rounds)
    for model in (["lenet"] if args.quick else ["lenet", "resnet20"]):
        # K=200 in the loop is 200 forward/backward passes a step: fewer steps suffice
        tables["scaling"] += scaling_table(setup, model, ks, 4, min(steps, 3), min(rounds, 2))
    for row in tables["speed"]:
        print(f"  {row['model']:<10}{row['config']:<14}{row['images_per_s']:>9.0f} img/s "
              f"{row['vs_limit']:>5.2f}x plain {row['ops_per_step']:>7} ops/step "
              f"{row['syncs_per_step']} host syncs")
    for row in tables["scaling"]:
        print(f"  {row['model']:<10}{row['mode']:<6}K={row['k']:<4}"
              f"{row['ms_per_partition']:>8.2f} ms/partition {row['vs_first_k']:>5.2f}x K=5")
    return tables


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny subset (CPU tests)")
    parser.add_argument("--out", required=True, help="JSON summary path")
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--iterations", type=int, default=None, help="50 (quick: 2)")
    parser.add_argument("--max-runs", type=int, default=None,
                        help="simulation runs per config (default 8; quick: 1)")
    parser.add_argument("--max-distributed-runs", type=int, default=None,
                        help="torchrun runs in all (default 2; quick: 1)")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    args.iterations = args.iterations or (2 if args.quick else 50)
    args.max_runs = args.max_runs if args.max_runs is not None else (1 if args.quick else 8)
    if args.max_distributed_runs is None:
        args.max_distributed_runs = 1 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device; use --device cpu --quick for the CPU subset",
              file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    summary: dict[str, Any] = {"device": args.device, "quick": args.quick, "sections": {},
                               "torch": torch.__version__,
                               "gpu": (torch.cuda.get_device_name() if torch.cuda.is_available()
                                       else None)}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        data = {"cifar10": write_fake_cifar(Path(tmp) / "cifar", 40 if args.quick else 400),
                "flickr_mammal": write_fake_flickr(Path(tmp) / "flickr",
                                                   8 if args.quick else 48)}
        for section in args.sections:
            print(f"[{section}]", flush=True)
            start = time.perf_counter()
            try:
                if section in ("configs", "torchrun"):
                    result: Any = config_runs(args, data, "simulation" if section == "configs"
                                              else "distributed")
                    failures += sum(not r["ok"] for r in result)
                elif section == "speed":
                    result = speed(args)
                    # the engine reads nothing back per step (counters are read per evaluation)
                    failures += sum(r["syncs_per_step"] > 0 for r in result["speed"]
                                    if r["config"] != "limit")
                elif section == "clean":
                    result = clean_speed(args.device, args.quick)
                    failures += sum(not r["ok"] for r in result)
                else:
                    result = one_run(section, args, data, shrink, run_checked)
                    failures += sum(not r["ok"] for r in result)
            except Exception as exc:  # noqa: BLE001 - a section's crash is a failure, not the end
                result = {"error": f"{type(exc).__name__}: {exc}",
                          "trace": traceback.format_exc()[-2000:]}
                print(f"  FAIL {result['error']}", flush=True)
                failures += 1
            seconds = time.perf_counter() - start
            summary["sections"][section] = {"seconds": round(seconds, 1), "result": result}
            print(f"[{section}] {seconds:.1f} s", flush=True)
        summary["h100_estimate"] = h100_estimate(args, data)
        print_estimate(summary["h100_estimate"])
    summary["failures"] = failures
    Path(args.out).write_text(json.dumps(summary, indent=1, default=str))
    print(f"{'FAILED' if failures else 'passed'}: {failures} failure(s); summary in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
