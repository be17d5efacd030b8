"""Seed groups in the study driver: runs that differ only by seed train as one unit and are
stored as the rows each run alone gives; SkewScout runs stay alone."""

from __future__ import annotations

import pytest

from training.study import run
from training.study.config import study_from_dict
from training.study.executors import InlineBackend
from training.study.groups import SeedGroup, execute_group, group_key, unit_cost, units
from training.study.results import ResultsStore
from training.study.schedule import execute_all

DOC = {
    "name": "tiny", "num_partitions": 2, "threads": 1, "seeds": [0, 1, 2],
    "dataset": {"name": "digits", "image_size": 8},
    "train": {"iterations": 12, "batch_size": 20, "eval_every": 6},
    "algorithms": {"dgc": {"warmup_epoch_iterations": 2}},
    "grids": {"gaia": [0.1, 0.3], "fedavg": [2, 4], "dgc": [0.99, 0.999]},
    "skewscout": {"travel_interval": 4, "sample_size": 20},
    "experiments": [
        {"name": "n", "kind": "noniid", "models": ["gn-lenet"], "algorithms": ["bsp", "dgc"],
         "noniid_fractions": [0.0, 1.0]},
        {"name": "s", "kind": "skewscout", "models": ["gn-lenet"], "algorithms": ["fedavg"],
         "noniid_fractions": [1.0]},
    ],
}


def _comparable(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "wall_time_s"}


def test_units_group_runs_by_seed_and_keep_skewscout_alone() -> None:
    specs = study_from_dict(DOC).all_runs()
    groups = units(specs)
    assert sum(len(g) for g in groups) == len(specs)
    for group in groups:
        if group[0].skewscout is not None:
            assert len(group) == 1
            assert group_key(group[0]) is None
        else:
            assert [s.seed for s in group] == [0, 1, 2]
            assert len({group_key(s) for s in group}) == 1
    # noniid: 2 algorithms x 2 fractions; skewscout: BSP (shared) + 2 knobs; 3 scout runs alone
    assert sorted(len(g) for g in groups) == [1, 1, 1] + [3] * 6


def test_a_seed_group_needs_runs_that_differ_only_by_seed() -> None:
    specs = study_from_dict(DOC).all_runs()
    with pytest.raises(ValueError, match="differ only by seed"):
        SeedGroup((specs[0], specs[1]))       # bsp and dgc
    with pytest.raises(ValueError, match="differ only by seed"):
        SeedGroup((specs[0],))


def test_group_rows_equal_runs_alone() -> None:
    specs = [s for s in study_from_dict(DOC).all_runs() if s.algorithm == "dgc"][:3]
    outcomes = execute_group(SeedGroup(tuple(specs)))
    for spec, outcome in zip(specs, outcomes, strict=True):
        assert _comparable(outcome["row"]) == _comparable(run.execute_run(spec))


def test_the_driver_runs_groups_and_stores_one_row_per_run(tmp_path) -> None:
    study = study_from_dict(DOC)
    specs = study.all_runs(only=["n"])
    store = ResultsStore(tmp_path)
    outcome = execute_all(specs, store, InlineBackend(1), desc="t", progress=False)
    assert outcome.ran == len(specs) == 12 and not outcome.failures
    store.flush()
    for spec in specs[:4]:    # seeds 0 and 1 of BSP and DGC at fraction 0
        assert _comparable(store.rows[spec.run_id]) == _comparable(run.execute_run(spec))


def test_units_come_costliest_first() -> None:
    """Seed groups before the runs alone, and more partitions before fewer: the driver's last
    units are its shortest, so its jobs stay busy to the end."""
    doc = {**DOC, "experiments": [*DOC["experiments"], {
        "name": "wide", "kind": "noniid", "models": ["gn-lenet"], "algorithms": ["gaia"],
        "noniid_fractions": [1.0], "num_partitions": [4]}]}
    study = study_from_dict(doc)
    groups = units(study.all_runs())
    costs = [unit_cost(g) for g in groups]
    assert costs == sorted(costs, reverse=True)
    assert [len(g) for g in groups] == [3] * 7 + [1] * 3
    assert groups[0][0].algorithm == "gaia" and groups[0][0].num_partitions == 4
