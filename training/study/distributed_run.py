"""One study run under torch.distributed, one process per partition (docs/reference.md §3-4).

The study runner launches ``torchrun --nproc_per_node=N -m training.study.distributed_run
--spec SPEC.json --out ROW.json`` for a run with ``engine = "distributed"``;
``pipelines.train_distributed`` is the command line that builds a spec from flags. Dataset,
partitioning, model, algorithm and SkewScout are built exactly as the simulation's runner builds
them, so the two engines agree.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from skewtools.io import atomic_write_text
from training.distributed import ProcessInfo, init_distributed, local_trainer
from training.engine import RunResult, TrainConfig
from training.study.config import RunSpec

log = logging.getLogger(__name__)


def run_spec_distributed(spec: RunSpec,
                         backend: str | None = None) -> tuple[RunResult, dict[str, Any]]:
    """Run one study run (a :class:`~training.study.config.RunSpec`) as this process's partition;
    returns the result and the study's result row (the same on every rank).
    """
    from training.study.run import build_algorithm, build_model, result_row, run_data

    info = init_distributed(backend)
    if spec.num_partitions != info.world_size:
        raise ValueError(f"the run has {spec.num_partitions} partitions but {info.world_size} "
                         f"processes: use torchrun --nproc_per_node={spec.num_partitions}")
    train, val, shape = run_data(spec, info.rank)       # only this rank's partition
    config = replace(TrainConfig(**spec.train), seed=spec.seed)
    algorithm, scout = build_algorithm(spec)
    log.info("rank %d/%d: %s on %s", info.rank, info.world_size, spec.algorithm, info.device)
    result = local_trainer(partial(build_model, spec.model, *shape), algorithm, train[0], val,
                           config, callbacks=[scout] if scout is not None else []).run()
    return result, result_row(spec, result, scout, algorithm.knob)


def run_and_write(spec_of: Any, out: Path | None,
                  backend: str | None = None) -> tuple[ProcessInfo, RunSpec, RunResult]:
    """Start the process group, build the spec (``spec_of(world_size)``), run it, tear down;
    rank 0 writes the result row to ``out``."""
    import torch.distributed as dist

    info = init_distributed(backend)
    logging.basicConfig(level=logging.INFO if info.rank == 0 else logging.WARNING,
                        format=f"%(levelname)s rank {info.rank} %(name)s: %(message)s")
    try:
        spec = spec_of(info.world_size)
        result, row = run_spec_distributed(spec, backend)
    finally:
        dist.destroy_process_group()
    if info.rank == 0 and out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, json.dumps(row, indent=1))
    return info, spec, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="torchrun ... -m training.study.distributed_run")
    ap.add_argument("--spec", type=Path, required=True, help="a RunSpec as JSON")
    ap.add_argument("--out", type=Path, required=True, help="rank 0 writes the result row here")
    ap.add_argument("--backend", choices=["gloo", "nccl"])
    args = ap.parse_args(argv)
    spec = RunSpec(**json.loads(args.spec.read_text()))
    run_and_write(lambda _world: spec, args.out, args.backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
