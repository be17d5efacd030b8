"""Seed groups for the study driver (docs/engine.md, seed groups): the runs of a study that differ
only by seed train as one unit, one ``[S*N, P]`` stack in one process (``Trainer(seeds=...)``),
and come back as one row per run, each the row that seed's run alone gives.

For a model as small as digits' LeNet a step's cost is mostly per-op overhead and the memory
traffic of N tiny replicas, so S seeds in one stack cost far less than S runs. A run that needs
its own process or callbacks (the distributed engine, SkewScout) stays a unit of its own.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch

from training.engine import DivergedError, TrainConfig, Trainer
from training.study import run
from training.study.config import RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeedGroup:
    """Runs that differ only by seed, executed as one unit. Carries what the executors ask of a
    run (engine, partitions, train settings) so that every backend schedules it like one."""

    specs: tuple[RunSpec, ...]

    def __post_init__(self) -> None:
        keys = {group_key(spec) for spec in self.specs}
        if len(self.specs) < 2 or len(keys) != 1 or None in keys:
            raise ValueError("a SeedGroup holds >= 2 simulation runs without SkewScout that "
                             "differ only by seed; run any other run alone")

    @property
    def engine(self) -> str:
        return self.specs[0].engine

    @property
    def num_partitions(self) -> int:
        return self.specs[0].num_partitions

    @property
    def train(self) -> dict[str, Any]:
        return self.specs[0].train

    @property
    def run_id(self) -> str:
        return "+".join(spec.run_id for spec in self.specs)


Unit = RunSpec | SeedGroup


def group_key(spec: RunSpec) -> str | None:
    """What the runs of one group share (the run id with the seed set to 0), or None for a run
    that trains alone: SkewScout (a callback per run), the distributed engine and partial
    participation (its stack holds one run's participants)."""
    if (spec.skewscout is not None or spec.engine != "simulation"
            or spec.train.get("participation") is not None):
        return None
    return replace(spec, seed=0).run_id


def units(specs: Sequence[RunSpec]) -> list[tuple[RunSpec, ...]]:
    """``specs`` split into groups (runs that differ only by seed), the costliest first (ties in
    first-seen order); a run that trains alone is a group of one. Longest first keeps every job
    of the driver busy to the end: the last units to start are the short ones."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        key = group_key(spec)
        groups.setdefault(spec.run_id if key is None else key, []).append(spec)
    return sorted((tuple(group) for group in groups.values()), key=unit_cost, reverse=True)


def unit_cost(group: Sequence[RunSpec]) -> int:
    """A unit's relative cost: partition-iterations over its runs (a step's work is per
    partition; SkewScout's travel and the evaluations are small beside it)."""
    return sum(int(spec.train.get("iterations", TrainConfig.iterations)) * spec.num_partitions
               for spec in group)


def as_unit(specs: Sequence[RunSpec]) -> Unit:
    """One spec as it is; several as a :class:`SeedGroup`."""
    return specs[0] if len(specs) == 1 else SeedGroup(tuple(specs))


def members(unit: Unit) -> tuple[RunSpec, ...]:
    return unit.specs if isinstance(unit, SeedGroup) else (unit,)


def error_outcome(exc: BaseException) -> dict[str, Any]:
    """A failed run as data, as ``executors.run_one`` records it."""
    return {"error": f"{type(exc).__name__}: {exc}",
            "traceback": "".join(traceback.format_exception(exc)[-12:])}


def execute_group(group: SeedGroup) -> list[dict[str, Any]]:
    """Train the group's runs together; one outcome per run (``{"row": ...}``, or
    ``{"error": ..., "traceback": ...}`` for a run that diverged). Should the group itself fail
    (e.g. out of memory for the larger stack), each run is retried alone."""
    try:
        return _train_group(group.specs)
    except Exception as exc:     # noqa: BLE001 - each run alone says what fails, if anything
        log.warning("seed group %s failed (%s: %s); running its runs one by one",
                    group.run_id, type(exc).__name__, exc)
    outcomes = []
    for spec in group.specs:
        try:
            outcomes.append({"row": run.execute_run(spec)})
        except Exception as exc:     # recorded by the driver
            outcomes.append(error_outcome(exc))
    return outcomes


def _train_group(specs: Sequence[RunSpec]) -> list[dict[str, Any]]:
    data = [run.run_data(spec) for spec in specs]
    _, val, shape = data[0]
    if any(not (torch.equal(v.x, val.x) and torch.equal(v.y, val.y)) for _, v, _ in data[1:]):
        raise ValueError("the group's runs validate on different sets")
    algorithm, _ = run.build_algorithm(specs[0])
    cfg = replace(TrainConfig(**specs[0].train), seed=specs[0].seed, progress=False)
    trainer = Trainer(partial(run.build_model, specs[0].model, *shape), algorithm,
                      [part for train, _, _ in data for part in train], val, cfg,
                      seeds=[spec.seed for spec in specs])
    outcomes = []
    for spec, result in zip(specs, trainer.run_group(), strict=True):
        if isinstance(result, DivergedError):
            outcomes.append({"error": f"DivergedError: {result}", "traceback": ""})
        else:
            outcomes.append({"row": run.result_row(spec, result, None, algorithm.knob)})
    return outcomes
