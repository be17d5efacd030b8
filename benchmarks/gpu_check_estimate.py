"""How long ``benchmarks/gpu_check.py`` (full mode) takes on one H100, estimated on any machine.

The estimate is a cost model, not a measurement: for each section it lists the work the full
run does (runs x iterations x images per step, from the configs and gpu_check's defaults) and
prices it with

- ``fwd_flops``: forward FLOPs per image, *measured* here with ``torch.utils.flop_counter``
  at the run's image size (backward = 2x forward, so a training image costs 3x);
- ``ops``: ATen ops of one forward + backward, *measured* here by dispatch counting
  (``bench_simulation.count_ops``), x :data:`OPS_PER_STEP_FACTOR` for the optimizer and the
  algorithm; on the GPU the engine vmaps the partitions, so ops do not grow with them;
- the H100 figures below (NVIDIA's H100 SXM datasheet: 989 TFLOP/s dense bf16, 495 TF32;
  :data:`EFFICIENCY` of that reached by eager-mode convnets) and a per-op cost
  :data:`SECONDS_PER_OP` (kernel launch + eager dispatch);
- a step takes ``max(ops x SECONDS_PER_OP, 3 x fwd_flops x images / throughput)``, and for
  streamed Flickr-Mammal steps at least ``images x decode_seconds / CPU_CORES`` (JPEG decoding
  in the loader's workers, *measured* here per image on gpu_check's own fake shards);
- fixed costs per run, per torchrun run and per model creation (:data:`FIXED_SECONDS`).

Every constant is here, with why; the JSON summary lists the inputs next to each section.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

H100_TFLOPS = {"fp32": 495.0, "bf16": 989.0}   # dense tensor-core peaks (TF32 for fp32 convs)
EFFICIENCY = 0.3                 # of peak, for small-batch eager convnets (a cautious figure)
SECONDS_PER_OP = 12e-6           # CUDA launch (~5 us) + PyTorch eager dispatch per ATen op
OPS_PER_STEP_FACTOR = 3.0        # optimizer, algorithm and engine ops over forward + backward's
CPU_CORES = 16                   # the H100 machine's cores decode JPEGs in parallel
FIXED_SECONDS = {
    "run": 4.0,                  # data + model build, first-iteration cuDNN autotune, one eval
    "torchrun": 25.0,            # 5 processes importing torch + process-group setup
    "model": 8.0,                # timm model creation with random init (pnasnet5large's size)
    "workers": 3.0,              # one spawn of a partition's persistent loader workers
}


def fwd_flops(model: nn.Module, shape: tuple[int, int, int]) -> float:
    """Forward FLOPs of one image of ``shape`` (C, H, W), counted by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *shape))
    return float(counter.get_total_flops())


def fwd_bwd_ops(model: nn.Module, shape: tuple[int, int, int],
                count: Callable[[Callable[[], object]], tuple[int, int, int]]) -> int:
    """ATen ops of one forward + backward at batch 2 (op counts do not depend on the batch)."""
    model.train()
    x = torch.zeros(2, *shape)

    def step() -> None:
        model(x).float().sum().backward()

    return count(step)[0]


def step_seconds(profile: dict[str, float], images: int, precision: str = "fp32",
                 decode_seconds: float = 0.0) -> float:
    """One training step of ``images`` images on an H100 (the module docstring's model)."""
    throughput = H100_TFLOPS[precision] * 1e12 * EFFICIENCY
    compute = 3.0 * profile["fwd_flops"] * images / throughput
    launch = profile["ops"] * OPS_PER_STEP_FACTOR * SECONDS_PER_OP
    decode = images * decode_seconds / CPU_CORES
    return max(compute, launch, decode)


def run_seconds(profile: dict[str, float], images: int, iterations: int, *,
                precision: str = "fp32", decode_seconds: float = 0.0,
                fixed: str = "run") -> float:
    """One run: its fixed cost and ``iterations`` steps."""
    return FIXED_SECONDS[fixed] + iterations * step_seconds(profile, images, precision,
                                                           decode_seconds)


def decode_seconds_per_image(samples: Any, n: int = 16) -> float:
    """Seconds to read, decode and transform one photo of a stream, in this thread."""
    it = iter(samples)
    next(it)                                  # opening the shard is not per image
    start = time.perf_counter()
    got = 0
    for _ in range(n):
        try:
            next(it)
        except StopIteration:
            break
        got += 1
    return (time.perf_counter() - start) / max(got, 1)


def profile_model(model: nn.Module, shape: tuple[int, int, int],
                  count: Callable[[Callable[[], object]], tuple[int, int, int]]
                  ) -> dict[str, float]:
    """The measured inputs of the cost model for one model at one image shape."""
    return {"fwd_flops": fwd_flops(model, shape), "ops": float(fwd_bwd_ops(model, shape, count))}
