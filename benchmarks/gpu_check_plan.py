"""gpu_check's single-run sections (``precision``, ``flickr``, ``skewscout``) and the H100 time
estimate of the full check, section by section (the cost model is ``gpu_check_estimate``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from gpu_check_estimate import (
    EFFICIENCY,
    FIXED_SECONDS,
    H100_TFLOPS,
    OPS_PER_STEP_FACTOR,
    SECONDS_PER_OP,
    decode_seconds_per_image,
    profile_model,
    run_seconds,
    step_seconds,
)

from training.study.config import DEFAULT_CONFIG, RunSpec, load_study

log = logging.getLogger("gpu_check")
FULL = {"iterations": 50, "max_runs": 8, "max_distributed_runs": 2}   # gpu_check's defaults
PNASNET_FWD_FLOPS = 2 * 25.0e9   # timm's pnasnet5large card: 25.0 GMACs per 331 px image


def config_specs(name: str) -> list[RunSpec]:
    return load_study(DEFAULT_CONFIG.parent / f"{name}.toml").all_runs()


def first(specs: list[RunSpec], **want: Any) -> RunSpec:
    """The first spec whose attributes (``mode``, ``algorithm``, ...) match ``want``."""
    for spec in specs:
        if all(getattr(spec, k) == v for k, v in want.items()):
            return spec
    raise LookupError(f"no run with {want}")


def section_specs(section: str) -> list[tuple[str, RunSpec, dict[str, Any]]]:
    """(variant, spec, train overrides) of a single-run section."""
    cuda = torch.cuda.is_available()
    if section == "precision":
        spec = first(config_specs("cifar10_skewscout"), mode="fixed", algorithm="bsp")
        return [("fp32", spec, {}),
                ("bf16+channels_last" if cuda else "channels_last", spec,
                 {"channels_last": True, "bf16": cuda})]
    if section == "flickr":
        spec = first(config_specs("flickr_mammal_continents"), mode="fixed", algorithm="gaia",
                     noniid_fraction=1.0)
        return [("non-IID, persistent loaders", spec, {})]
    if section == "skewscout":
        spec = first(config_specs("cifar10_skewscout"), mode="skewscout", algorithm="dgc")
        return [("dgc", spec, {})]
    raise KeyError(f"unknown single-run section {section!r}; known: precision, flickr, skewscout")


def run_kind(spec: RunSpec) -> tuple:
    """What a run exercises on a device: its data, model, algorithm, mode and the train
    settings that switch code paths (FixBN, partial participation, the authors' protocol)."""
    train = spec.train
    return (spec.dataset["name"], spec.model, spec.algorithm, spec.mode, train.get("norm_stats"),
            train.get("participation"), train.get("layer_multipliers"), train.get("bn_average"))


def pick_runs(specs: list[RunSpec], limit: int | None, seen: set[tuple] | None = None
              ) -> list[RunSpec]:
    """The distinct kinds (:func:`run_kind`) first, then the rest, at most ``limit``. With
    ``seen`` (shared across configs) only kinds no earlier config ran, each once: the shipped
    configs repeat the digits kinds many times, and a device check needs each code path once."""
    first, rest, kinds = [], [], set() if seen is None else seen
    for spec in specs:
        kind = run_kind(spec)
        (rest if kind in kinds else first).append(spec)
        kinds.add(kind)
    return (first if seen is not None else first + rest)[:limit]


def one_run(section: str, args: Any, data: dict[str, str],
            shrink: Callable[..., RunSpec], run_checked: Callable[[RunSpec], dict]) -> list[dict]:
    """Run a single-run section; each row gets its variant and seconds per step."""
    rows = []
    for variant, spec, overrides in section_specs(section):
        spec = shrink(spec, args, data)
        iterations = int(spec.train["iterations"])
        if section == "flickr":     # more steps than one pass over a partition's fake shards
            iterations = 6 if args.quick else iterations
            spec = replace(spec, dataset={**spec.dataset, "num_workers": 2 if args.quick else 4},
                           train={**spec.train, "iterations": iterations,
                                  "eval_every": iterations})
        spec = replace(spec, train={**spec.train, **overrides})
        row = run_checked(spec)
        row.update(section=section, variant=variant,
                   s_per_step=round(row.get("seconds", 0.0) / iterations, 4))
        print(f"  {section:<10} {variant:<28} {'ok' if row['ok'] else 'FAIL ' + row['error']}"
              f"  {row['s_per_step']:.3f} s/step", flush=True)
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- the estimate

def _shape(spec: RunSpec) -> tuple[int, int, int]:
    """(classes, channels, image size) of a run's data."""
    name = spec.dataset["name"]
    if name == "digits":
        return 10, 1, int(spec.dataset.get("image_size") or 8)
    if name == "cifar10":
        return 10, 3, 32
    return 42, 3, int(spec.dataset.get("image_size") or 224)


class Profiles:
    """Measured FLOPs and op counts per (model, data shape), each measured once."""

    def __init__(self) -> None:
        from bench_simulation import count_ops

        self.count = count_ops
        self.cache: dict[tuple, dict[str, float]] = {}

    def of(self, model: str, classes: int, channels: int, size: int) -> dict[str, float]:
        key = (model, classes, channels, size)
        if key not in self.cache:
            from training.study.run import build_model

            torch.manual_seed(0)
            net = build_model(model, classes, channels, size)
            flops = profile_model(net, (channels, size, size), self.count)["fwd_flops"]
            small = min(size, 64)      # op counts do not depend on the image size
            ops = profile_model(build_model(model, classes, channels, small),
                                (channels, small, small), self.count)["ops"]
            self.cache[key] = {"fwd_flops": flops, "ops": ops}
        return self.cache[key]

    def spec(self, spec: RunSpec) -> dict[str, float]:
        return self.of(spec.model, *_shape(spec))


def _spec_seconds(profiles: Profiles, spec: RunSpec, decode: float, fixed: str = "run",
                  precision: str = "fp32") -> float:
    flickr = spec.dataset["name"] == "flickr_mammal"
    return run_seconds(profiles.spec(spec), int(spec.train["batch_size"]), FULL["iterations"],
                       precision=precision, decode_seconds=decode if flickr else 0.0,
                       fixed=fixed) + (FIXED_SECONDS["workers"] if flickr else 0.0)


def _configs(profiles: Profiles, decode: float) -> float:

    total, seen = 0.0, set()
    for path in sorted(DEFAULT_CONFIG.parent.glob("*.toml")):
        for spec in pick_runs(load_study(path).all_runs(), FULL["max_runs"], seen):
            total += _spec_seconds(profiles, spec, decode)
    return total


def _torchrun(profiles: Profiles, decode: float) -> float:
    paths = sorted(DEFAULT_CONFIG.parent.glob("*.toml"))[:FULL["max_distributed_runs"]]
    return sum(_spec_seconds(profiles, load_study(p).all_runs()[0], decode, "torchrun")
               for p in paths)


def _speed(profiles: Profiles) -> float:
    """bench_simulation's tables: per model, the plain limit and 4 algorithms x (loop, vmap),
    10 steps x 3 rounds + a warm-up and an op-counting step; K-scaling at 4 images/partition."""
    total = 0.0
    for model in ("lenet", "resnet20", "googlenet"):
        p = profiles.of(model, 10, 3, 32)
        loop = {**p, "ops": 5 * p["ops"]}
        total += 32 * (step_seconds(p, 100) * 5 + step_seconds(loop, 100) * 4)
    for model in ("lenet", "resnet20"):
        p = profiles.of(model, 10, 3, 32)
        for k in (5, 20, 50, 100, 200):
            total += 8 * (step_seconds(p, 4 * k) + step_seconds({**p, "ops": k * p["ops"]}, 4 * k))
    return total


def _clean(profiles: Profiles) -> float:
    """Model creation, 256 + 32 images in bf16 and 32 in float32, forward only."""
    import timm
    from gpu_check_estimate import fwd_flops

    lite = fwd_flops(timm.create_model("efficientnet_lite0", pretrained=False), (3, 224, 224))
    bf16 = H100_TFLOPS["bf16"] * 1e12 * EFFICIENCY
    fp32 = H100_TFLOPS["fp32"] * 1e12 * EFFICIENCY
    return sum(FIXED_SECONDS["model"] + f * (288 / bf16 + 32 / fp32)
               for f in (lite, PNASNET_FWD_FLOPS))


def _single(section: str, profiles: Profiles, decode: float) -> float:
    total = 0.0
    for variant, spec, _ in section_specs(section):
        precision = "bf16" if variant.startswith("bf16") else "fp32"
        total += _spec_seconds(profiles, spec, decode, precision=precision)
    return total


def h100_estimate(args: Any, data: dict[str, str]) -> dict[str, Any]:
    """Seconds per section of the full check (gpu_check's defaults) on one H100, and the
    inputs: the measured decode time and each model's FLOPs and op count."""
    from flickr_mammal import load_partitions
    from training.study.flickr import _transform

    parts = load_partitions(data["flickr_mammal"], by="continent", split="train",
                            transform=_transform(224))
    decode = decode_seconds_per_image(next(iter(parts.values())))
    profiles = Profiles()
    sections = {"configs": _configs(profiles, decode), "torchrun": _torchrun(profiles, decode),
                "speed": _speed(profiles), "clean": _clean(profiles)}
    for name in ("precision", "flickr", "skewscout"):
        sections[name] = _single(name, profiles, decode)
    return {"seconds": {k: round(v, 1) for k, v in sections.items()},
            "total_seconds": round(sum(sections.values()), 1),
            "basis": {"h100_tflops": H100_TFLOPS, "efficiency": EFFICIENCY,
                      "seconds_per_op": SECONDS_PER_OP, "ops_per_step_factor":
                      OPS_PER_STEP_FACTOR, "fixed_seconds": FIXED_SECONDS,
                      "decode_seconds_per_image_here": round(decode, 5),
                      "models": {"/".join(map(str, k)): v for k, v in profiles.cache.items()}}}


def print_estimate(estimate: dict[str, Any]) -> None:
    print("H100 estimate of the full check (cost model: benchmarks/gpu_check_estimate.py):")
    for name, seconds in estimate["seconds"].items():
        print(f"  {name:<10}{seconds:>8.1f} s")
    total = estimate["total_seconds"]
    print(f"  {'total':<10}{total:>8.1f} s = {total / 60:.1f} min "
          f"({'within' if total < 480 else 'OVER'} the 8-minute budget)", flush=True)
