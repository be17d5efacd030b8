"""The default study runs in the authors' regime: >= 3 seeds at >= 1,200 iterations with DGC's
warm-up scaled and every FedAvg knob a divisor of the iterations; digits_full.toml is its full
grid (every finding)."""

from __future__ import annotations

from training.study.config import DEFAULT_CONFIG, load_study
from training.study.groups import units


def test_default_study_runs_seeds_in_the_authors_regime() -> None:
    study = load_study()
    iterations = study.train["iterations"]
    assert len(study.seeds) >= 3 and iterations >= 1200
    # DGC's 4 warm-up "epochs" keep their share of the run (60 of 300 at the old schedule)
    assert study.algorithms["dgc"]["warmup_epoch_iterations"] * 4 / iterations == 60 / 300
    assert all(iterations % knob == 0 for knob in study.grids["fedavg"])
    assert iterations % study.algorithms["fedavg"]["iter_local"] == 0
    # every run trains in a seed group of all the seeds
    assert {len(group) for group in units(study.all_runs())} == {len(study.seeds)}


def test_digits_full_is_the_default_with_the_full_grid() -> None:
    default, full = load_study(), load_study(DEFAULT_CONFIG.parent / "digits_full.toml")
    assert full.train == default.train and full.seeds == default.seeds
    assert full.grids == default.grids and full.algorithms == default.algorithms
    kinds = {e.kind for e in full.experiments}
    assert kinds == {"noniid", "norm", "skew_degree", "partitions", "skewscout"}
    assert {s.run_id for s in default.all_runs()} <= {s.run_id for s in full.all_runs()}
