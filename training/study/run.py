"""One study run, start to finish: its data, model, algorithm (and SkewScout callback), training on
either engine, and its result row. The study driver (``runner``) and every executor call
:func:`execute_run`; nothing here knows about scheduling or the results store."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Any

from training.algorithms import create_algorithm
from training.datasets import PartitionData
from training.engine import TrainConfig, Trainer
from training.models import create_model
from training.skewscout.scout import SkewScout, ordered_grid, scout_config
from training.study.config import KNOB_OF, Experiment, RunSpec, StudyConfig


def execute_run(spec: RunSpec) -> dict[str, Any]:
    """Train one run and return its result row."""
    if spec.engine == "distributed":
        return execute_distributed(spec)
    trainer, scout = build_trainer(spec)
    result = trainer.run()
    return result_row(spec, result, scout, trainer.algorithm.knob)


def build_trainer(spec: RunSpec) -> tuple[Trainer, SkewScout | None]:
    """The simulation's Trainer for one run (SkewScout as its callback, if the run has one),
    not yet trained: :func:`execute_run` runs it; tools may step it themselves."""
    train, val, shape = run_data(spec)
    algorithm, scout = build_algorithm(spec)
    cfg = replace(TrainConfig(**spec.train), seed=spec.seed, progress=False)
    trainer = Trainer(partial(build_model, spec.model, *shape), algorithm, train, val, cfg,
                      callbacks=[scout] if scout is not None else [])
    return trainer, scout


def check_run(spec: RunSpec) -> None:
    """Raise ValueError (saying how to fix it) if ``spec`` could not run: the study's own load
    checks (:class:`~training.study.config.StudyConfig`), applied to a study of this one run."""
    scout = dict(spec.skewscout or {})
    grid, target = scout.pop("grid", None), scout.pop("target", 0.03)
    params = dict(spec.algorithm_params)
    if spec.skewscout is not None and spec.algorithm in KNOB_OF:
        params.pop(KNOB_OF[spec.algorithm], None)
    exp = Experiment("this run", "skewscout" if spec.skewscout is not None else "noniid",
                     (spec.model,), (spec.algorithm,), (spec.noniid_fraction,),
                     (spec.num_partitions,))
    try:
        StudyConfig(name="this run", dataset=spec.data, experiments=(exp,),
                    num_partitions=spec.num_partitions, partitioner=spec.partitioner,
                    partitioner_params=dict(spec.partitioner_params), train=dict(spec.train),
                    algorithms={spec.algorithm: params}, target=target, skewscout=scout,
                    engine=spec.engine,
                    **({"grids": {spec.algorithm: tuple(grid)}} if grid is not None else {}))
    except TypeError as exc:          # e.g. a grid that is not a list
        raise ValueError(str(exc)) from None


def run_data(spec: RunSpec, rank: int | None = None
             ) -> tuple[list[Any], PartitionData, tuple[int, int, int]]:
    """The run's training partitions (all, or only partition ``rank``'s), its validation set and
    the model's (classes, channels, image size); both engines build them here."""
    return spec.data.partitions(spec.partitioner, spec.partitioner_params, spec.num_partitions,
                                spec.noniid_fraction, spec.seed, rank)


def build_algorithm(spec: RunSpec) -> tuple[Any, SkewScout | None]:
    """The run's algorithm and, for a SkewScout run, the callback that turns its knob (the
    algorithm starts at the controller's first knob); both engines build them here."""
    scout = _skewscout(spec)
    params = dict(spec.algorithm_params)
    if scout is not None:
        params[KNOB_OF[spec.algorithm]] = scout.initial_knob
    return create_algorithm(spec.algorithm, **params), scout


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> Any:
    """The study's model (both engines build it here): ``create_model`` with positional shape."""
    return create_model(name, num_classes=num_classes, in_channels=in_channels,
                        image_size=image_size)


def result_row(spec: RunSpec, result: Any, scout: SkewScout | None,
               final_knob: float | None) -> dict[str, Any]:
    """One flat-ish record: the spec's key fields, the outcome and the communication."""
    curve = [[int(i), round(float(a), 5)] for i, a in result.curve]
    accs = [a for _, a in curve] or [float(result.final.mean)]
    row: dict[str, Any] = {
        "run_id": spec.run_id, "mode": spec.mode, "dataset": spec.dataset["name"],
        "model": spec.model, "algorithm": spec.algorithm,
        "knob": spec.knob if scout is None else final_knob,
        "noniid_fraction": spec.noniid_fraction, "num_partitions": spec.num_partitions,
        "seed": spec.seed, "iterations": result.iterations,
        "final_acc": float(result.final.mean),
        "final_global_acc": result.final.global_acc, "best_acc": max(accs),
        "acc_at_half": accs[len(accs) // 2 - 1] if len(accs) > 1 else accs[-1],
        "bytes_sent": [float(b) for b in result.bytes_sent],
        "bytes_per_iteration": float(result.bytes_per_iteration),
        "bsp_bytes_per_iteration": float(result.bsp_bytes_per_iteration),
        "comm_vs_bsp": float(result.relative_communication),
        # message x destinations (Algorithm docstring); bytes_per_iteration is per message
        "wire_bytes_per_iteration": float(getattr(result, "wire_bytes_per_iteration", 0.0)),
        "wall_time_s": round(float(result.wall_time_s), 3), "curve": curve,
        "bytes_curve": [[int(i), float(b)] for i, b in result.bytes_curve],
        "travel_bytes": 0.0, "knob_trace": [], "estimates": [], "spec": asdict(spec),
    }
    if scout is not None:
        summary = scout.summary()
        row.update(travel_bytes=summary["travel_bytes"], knob_trace=summary["knob_trace"],
                   estimates=summary["estimates"])
    return row


def _skewscout(spec: RunSpec) -> SkewScout | None:
    if spec.skewscout is None:
        return None
    opts = dict(spec.skewscout)
    grid = ordered_grid(KNOB_OF[spec.algorithm], opts.pop("grid"))
    return SkewScout(grid, scout_config(opts, seed=spec.seed))


def execute_distributed(spec: RunSpec) -> dict[str, Any]:
    """One run as ``torchrun --nproc_per_node=N -m training.study.distributed_run --spec ...``."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path, out_path = Path(tmp) / "spec.json", Path(tmp) / "row.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={spec.num_partitions}", "-m", "training.study.distributed_run",
               "--spec", str(spec_path), "--out", str(out_path)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"distributed run {spec.run_id} failed ({done.returncode}):\n"
                               f"{done.stderr[-2000:]}")
        return json.loads(out_path.read_text())
