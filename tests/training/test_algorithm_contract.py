"""The contract every registered algorithm keeps (``list_algorithms()``: one registered later is
checked too): a valid knob and grid, schedule checks that answer in sentences, training on the
simulation engine (loop and vmap alike, alone and in a seed group) and on the torch.distributed
engine (2 gloo processes on 127.0.0.1) with the same numbers, bytes counted, the divergence
check passed, partial participation where declared, and SkewScout / the Oracle driving every
knob."""

import inspect
from dataclasses import fields, replace

import pytest
import torch

from tests.training.distributed_helpers import (
    assert_ranks_match,
    launch_and_gather,
    mlp_bn,
    outcome,
    save_rank,
    skewed_data,
)
from training.algorithms import create_algorithm, list_algorithms
from training.algorithms.base import KnobSpec, algorithm_class
from training.distributed import distributed_trainer
from training.engine import DivergedError, TrainConfig, Trainer
from training.skewscout.controller import ordered_grid

ALGORITHMS = list_algorithms()
CONFIG = TrainConfig(iterations=6, batch_size=16, lr=0.1, eval_every=3, eval_batch_size=32,
                     seed=3, progress=False)


def _algorithm(name: str):
    """The algorithm with its defaults, its knob at the grid's most communicative value (so that
    a 6-iteration run communicates: FedAvg's family averages at 5 and at the last iteration)."""
    algorithm = create_algorithm(name)
    if algorithm.KNOB is not None:
        grid = ordered_grid(algorithm.KNOB.name, algorithm.KNOB.default_grid)
        algorithm.set_knob(grid[0])
    return algorithm




@pytest.mark.parametrize("name", ALGORITHMS)
def test_the_knob_and_the_schedule_checks(name):
    cls = algorithm_class(name)
    algorithm = create_algorithm(name)        # the defaults are valid
    algorithm.validate()
    problems = algorithm.schedule_problems(300, TrainConfig(iterations=300).lr_phases())
    assert isinstance(problems, list) and all(isinstance(p, str) and p for p in problems)
    if cls.KNOB is None:
        assert algorithm.knob is None
        return
    assert isinstance(cls.KNOB, KnobSpec)
    assert cls.KNOB.name in inspect.signature(cls).parameters, "the knob is a constructor name"
    for value in cls.KNOB.default_grid:       # every grid value is a valid knob, read back
        algorithm.set_knob(value)
        assert algorithm.knob == pytest.approx(value)
        assert create_algorithm(name, **{cls.KNOB.name: value}).knob == pytest.approx(value)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_trains_on_the_simulation_engine_alike_in_the_loop_and_vmap(name):
    parts, val = skewed_data(k=3)
    runs = []
    for vectorize in (False, True):
        trainer = Trainer(mlp_bn, _algorithm(name), parts, val,
                          replace(CONFIG, vectorize=vectorize))
        initial = trainer.stack.params.clone()
        result = trainer.run()
        trainer.check_finite()                 # the divergence check passes...
        assert torch.isfinite(trainer.stack.params).all()
        assert not torch.allclose(trainer.stack.params, initial), f"{name} did not train"
        assert all(0.0 <= a <= 1.0 for a in result.final.per_partition)
        # ...and the traffic is counted: every algorithm here communicates within 6 iterations
        assert min(result.bytes_sent) > 0 and min(result.bytes_received) > 0, name
        assert result.wire_bytes_sent == pytest.approx([2 * b for b in result.bytes_sent])
        runs.append((trainer.stack.params.clone(), result))
    (p_loop, loop), (p_vmap, vmap) = runs
    torch.testing.assert_close(p_vmap, p_loop, rtol=1e-9, atol=1e-9, msg=name)
    assert vmap.bytes_sent == pytest.approx(loop.bytes_sent)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_run_that_blows_up_is_stopped_by_the_divergence_check(name):
    # no algorithm may hide a non-finite gradient (e.g. in a residual it never sends)
    parts, val = skewed_data(k=3)
    with pytest.raises(DivergedError, match="non-finite loss/gradient at iteration"):
        Trainer(mlp_bn, _algorithm(name), parts, val, replace(CONFIG, lr=1e200)).run()


@pytest.mark.parametrize("name", ALGORITHMS)
def test_a_seed_group_computes_each_seeds_run(name):
    # the algorithm's collectives stay within each run of the group (GroupedComm)
    parts, val = skewed_data(k=2)
    group = Trainer(mlp_bn, _algorithm(name), parts + parts, val, CONFIG, seeds=(3, 4))
    results = group.run_group()
    for run, seed in enumerate((3, 4)):
        alone = Trainer(mlp_bn, _algorithm(name), parts, val, replace(CONFIG, seed=seed))
        result = alone.run()
        torch.testing.assert_close(group.stack.params[2 * run:2 * run + 2], alone.stack.params,
                                   rtol=1e-9, atol=1e-12, msg=f"{name} seed {seed}")
        assert results[run].bytes_sent == pytest.approx(result.bytes_sent), name


def _worker(rank: int, out_dir: str) -> None:
    parts, val = skewed_data()
    outcomes = {}
    for name in ALGORITHMS:
        trainer = distributed_trainer(mlp_bn, _algorithm(name), parts, val, CONFIG)
        outcomes[name] = outcome(trainer, trainer.run(), 0)
    save_rank(outcomes, out_dir, rank)


def test_the_distributed_engine_computes_the_simulations_run(tmp_path):
    ranks = launch_and_gather(_worker, 2, tmp_path)
    parts, val = skewed_data()
    for name in ALGORITHMS:
        sim = Trainer(mlp_bn, _algorithm(name), parts, val, CONFIG)
        result = sim.run()
        for got, want in assert_ranks_match(ranks, name, sim, result):
            assert [i for i, _ in got["curve"]] == [i for i, _ in want["curve"]] == [3, 6]
            assert [a for _, a in got["curve"]] == pytest.approx([a for _, a in want["curve"]])
            for key in ("bytes_sent", "wire", "received"):
                assert got[key] == pytest.approx(want[key]) and min(got[key]) > 0, (name, key)
            assert got["bytes_curve"] == want["bytes_curve"], name


def _participation_supported() -> bool:
    return "participation" in {f.name for f in fields(TrainConfig)}


def _participating() -> list[str]:
    return [a for a in ALGORITHMS if getattr(algorithm_class(a), "supports_participation", False)]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_partial_participation_where_declared(name):
    if not _participation_supported():
        pytest.skip("this engine has no partial participation (TrainConfig.participation)")
    parts, val = skewed_data(k=4)
    config = replace(CONFIG, participation=0.5)
    if name not in _participating():     # asking for it is a one-line error
        with pytest.raises(ValueError, match=f"{name} does not support partial participation"):
            Trainer(mlp_bn, _algorithm(name), parts, val, config)
        return
    trainer = Trainer(mlp_bn, _algorithm(name), parts, val, config)
    result = trainer.run()
    assert torch.isfinite(trainer.stack.params).all() and sum(result.bytes_sent) > 0


def _participation_worker(rank: int, out_dir: str) -> None:
    parts, val = skewed_data(k=3)
    outcomes = {}
    for name in _participating():
        trainer = distributed_trainer(mlp_bn, _algorithm(name), parts, val,
                                      replace(CONFIG, participation=2))
        outcomes[name] = outcome(trainer, trainer.run(), 0)
    save_rank(outcomes, out_dir, rank)


def test_partial_participation_on_the_distributed_engine_computes_the_simulations_run(
        tmp_path):
    if not _participation_supported():
        pytest.skip("this engine has no partial participation (TrainConfig.participation)")
    ranks = launch_and_gather(_participation_worker, 3, tmp_path)
    parts, val = skewed_data(k=3)
    for name in _participating():
        sim = Trainer(mlp_bn, _algorithm(name), parts, val, replace(CONFIG, participation=2))
        result = sim.run()
        for rank in range(3):
            got = ranks[rank][name]
            # the run ends on a round's averaging: every partition holds the global model
            torch.testing.assert_close(got["params"], sim.stack.params[0], rtol=1e-9,
                                       atol=1e-12, msg=f"{name} rank {rank} parameters")
            assert got["per_partition"] == pytest.approx(result.final.per_partition), name
            assert got["bytes_sent"] == pytest.approx(result.bytes_sent), name
            assert got["wire"] == pytest.approx(result.wire_bytes_sent), name


STUDY = {
    "num_partitions": 2, "dataset": {"name": "digits", "image_size": 8},
    "train": {"iterations": 12, "batch_size": 20, "eval_every": 6},
    "skewscout": {"travel_interval": 3, "sample_size": 16, "target": 0.05},
}


@pytest.mark.parametrize("name", [a for a in ALGORITHMS if algorithm_class(a).KNOB is not None])
def test_skewscout_and_the_oracle_cover_every_knob(name):
    from training.study.config import study_from_dict

    study = study_from_dict({**STUDY, "experiments": [
        {"name": "s", "kind": "skewscout", "models": ["gn-lenet"], "algorithms": [name],
         "noniid_fractions": [1.0]}]})
    knob = algorithm_class(name).KNOB
    assert study.grids[name] == ordered_grid(knob.name, knob.default_grid)   # the Oracle's grid
    mine = [r for r in study.all_runs() if r.algorithm == name]
    assert [r.knob for r in mine] == [*study.grids[name], None]             # grid + SkewScout
    assert mine[-1].skewscout["grid"] == list(study.grids[name])


@pytest.mark.parametrize("name", ["scaffold", "ef_topk"])
def test_skewscout_drives_the_knob_of_a_new_algorithm(name):
    from training.study.config import study_from_dict
    from training.study.run import execute_run

    torch.set_num_threads(1)
    study = study_from_dict({**STUDY, "grids": {name: [1, 2, 3] if name == "scaffold"
                                                else [0.5, 0.9, 0.99]},
                             "experiments": [{"name": "s", "kind": "skewscout",
                                              "models": ["gn-lenet"], "algorithms": [name],
                                              "noniid_fractions": [1.0]}]})
    (scouted,) = [r for r in study.all_runs() if r.algorithm == name and r.skewscout]
    row = execute_run(scouted)
    assert len({knob for _, knob in row["knob_trace"]}) > 1, "SkewScout turned the knob"
    assert row["travel_bytes"] > 0 and row["estimates"]
    assert row["knob"] in study.grids[name] and sum(row["bytes_sent"]) > row["travel_bytes"]
